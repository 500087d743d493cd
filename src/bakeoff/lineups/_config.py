"""The lineup: which endpoints to compare, how to reach them, and what to run."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from bakeoff.endpoints import CREDENTIAL_HEADERS, Limits, RetryPolicy, Timeouts
from bakeoff.lineups._audit import AuditSettings
from bakeoff.lineups._keys import url_credential_problem, variable_name_problem
from bakeoff.lineups._regex import reply_pattern
from bakeoff.lineups._specs import FakeSpec, LocalSpec, ProxySpec, _Strict

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


MAX_ITEMS = 100_000
"""Items one suite may hold in a run (`run.limit`, and the records of a dataset)."""


class Price(_Strict):
    """Prices in dollars per million tokens."""

    input_per_m: float = Field(default=0.0, ge=0, le=1e6)
    """$ per 1M prompt (input) tokens."""
    output_per_m: float = Field(default=0.0, ge=0, le=1e6)
    """$ per 1M completion (output) tokens."""
    cached_input_per_m: float | None = Field(default=None, ge=0, le=1e6)
    """$ per 1M prompt tokens the endpoint served from its prompt cache
    (`usage.prompt_tokens_details.cached_tokens`); default: `input_per_m`. Used only when the
    endpoint does not report the call's cost itself (`usage.cost`)."""


class RateLimit(_Strict):
    """Client-side limits, so a run stays inside the provider's quota."""

    rpm: float | None = Field(default=None, gt=0, le=1e9)
    """Requests per minute."""
    tpm: float | None = Field(default=None, gt=0, le=1e12)
    """Tokens (prompt + completion) per minute, charged when each call finishes."""


class Sampling(_Strict):
    """Default sampling parameters sent with every request (an item may override max_tokens)."""

    temperature: float | None = Field(default=0.0, ge=0, le=100)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=256, gt=0, le=10_000_000)
    seed: int | None = None


class Routing(_Strict):
    """Provider routing as OpenRouter takes it (sent as the `provider` field of the body)."""

    only: list[str] | None = None
    order: list[str] | None = None
    ignore: list[str] | None = None
    quantizations: list[str] | None = None
    allow_fallbacks: bool | None = None
    require_parameters: bool | None = None
    data_collection: Literal["allow", "deny"] | None = None
    sort: str | None = None


class Claims(_Strict):
    """What the provider says it serves, beside `context` (written by `bakeoff lineup openrouter`
    from the listing): shown beside what the run measured."""

    upstream_name: str | None = Field(default=None, max_length=100)
    """The name the pinned upstream goes by in replies (OpenRouter's `provider`, such as
    `NovitaAI` for routing slug `novita`): a call another upstream served is told by it."""
    quantization: str | None = Field(default=None, max_length=40)
    """The precision claimed (`bf16`, `fp8`, `int4`, ...): the audit says whether the outputs
    agree with the reference's."""
    max_output_tokens: int | None = Field(default=None, ge=1, le=100_000_000)
    """The longest reply claimed; the capability probe measures the real one."""


class Endpoint(_Strict):
    """One endpoint of the lineup: a model behind an OpenAI-compatible API."""

    name: str
    """Short unique name, shown in tables (letters, digits, `_ . -`)."""
    base_url: str | None = None
    """API base, e.g. `http://gpu-box:8000/v1`. Default: the provider preset's (OpenRouter,
    Together, Fireworks, Groq, DeepInfra, OpenAI; vLLM, SGLang, llama.cpp, Ollama, LM Studio on
    their usual local ports); not needed for `fake`, `local` or `proxy`."""
    model: str = "default"
    """The model id sent in every request."""
    provider: str = "openai"
    """Provider plugin and preset: `openai` (OpenAI, or any OpenAI-compatible API given a
    `base_url`), `openrouter`, `together`, `fireworks`, `groq`, `deepinfra`, `vllm`, `sglang`,
    `llamacpp`, `ollama`, `lmstudio`; `local` (a server of the packaged model), `proxy` (a
    distortion proxy), `fake`; or a plugin's. See `bakeoff providers`."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (never the key itself). Default,
    when `base_url` is left to the preset too: the preset's (`OPENROUTER_API_KEY`, ...)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers (no credentials here: use api_key_env)."""
    routing: Routing | None = None
    """Provider routing passed through to the endpoint (OpenRouter `provider` object)."""
    extra_body: dict[str, object] = Field(default_factory=dict)
    """Extra JSON body fields sent as they are."""
    engine: Literal["llama.cpp", "vllm", "sglang", "transformers", "openai"] | None = None
    """The inference engine behind the endpoint, when known: the fidelity audit then sends, with
    every audit call (greedy too), the fields that switch off that engine's own sampler defaults
    (llama.cpp penalises repeats by 1.1 even at temperature 0). `openai`: a strict API that takes
    no extra field. Unset: `llama.cpp` for `provider: local` (or its `local.engine`), followed
    through a proxy to its target; nothing is sent otherwise. See docs/FIDELITY.md."""
    neutral_params: dict[str, object] | None = None
    """The body fields that switch off this endpoint's own sampler defaults, sent with every audit
    call (greedy and sampled). Default: those of its `engine`, else its provider preset's
    (OpenRouter `top_k: 0, min_p: 0, repetition_penalty: 1`); `{}` sends none."""
    api: Literal["chat", "completions"] = "chat"
    stream: bool = True
    stream_usage: bool = True
    """Ask for usage in the stream (`stream_options.include_usage`)."""
    price: Price | None = None
    context: int | None = Field(default=None, ge=64, le=100_000_000)
    """The context length (tokens) the provider claims; long-context items beyond it are skipped
    for this endpoint (for `provider: local`, the server's n_ctx)."""
    claims: Claims | None = None
    """Other claims of the provider (quantization, output limit), kept with the run."""
    max_concurrency: int = Field(default=4, ge=1, le=4096)
    """Requests in flight at once to this endpoint."""
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    limits: Limits = Field(default_factory=Limits)
    """How much one reply may send (bytes); past it the call is a `too_large` error."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    params: Sampling | None = None
    """Sampling parameters for this endpoint; unset fields fall back to the lineup's `defaults`."""
    fake: FakeSpec | None = None
    local: LocalSpec | None = None
    proxy: ProxySpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                "use letters, digits, '_', '.', '-' (and start with a letter or digit)"
            )
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        problem = None if v is None else variable_name_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if not v:
            return v
        if not re.match(r"^https?://", v):
            raise ValueError("base_url must start with http:// or https://")
        problem = url_credential_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if k.lower() in CREDENTIAL_HEADERS:
                raise ValueError(
                    f"header {k!r} would put a credential in the lineup file; use api_key_env"
                )
        return v

    @model_validator(mode="before")
    @classmethod
    def _refuse_literal_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key" in data:
            raise ValueError(
                "api_key: literal API keys are refused; put the key in an environment variable "
                "and name that variable with api_key_env"
            )
        return data

    @model_validator(mode="after")
    def _check(self) -> Endpoint:
        if self.provider == "fake":
            if self.fake is None:
                self.fake = FakeSpec()
        elif self.provider == "local":
            if self.local is None:
                self.local = LocalSpec()
        elif self.provider == "proxy" and self.proxy is None:
            raise ValueError("provider: proxy needs a `proxy:` section naming its target")
        return self


class StopWhen(_Strict):
    """Stop asking a suite's items once its score is known well enough (per endpoint)."""

    ci_width: float = Field(gt=0, le=1)
    """Stop once the score's anytime-valid 95% interval is narrower than this (full width)."""
    min_items: int = Field(default=20, ge=2, le=MAX_ITEMS)
    """Never stop before this many items are answered."""


class RunSettings(_Strict):
    """What to run over the lineup."""

    # the CLI's --limit/--repeats/--suite land here: checked like the file's values
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    suites: list[str] = Field(default_factory=lambda: ["arith"])
    """Suite names (see `bakeoff suites`)."""
    limit: int | None = Field(default=None, gt=0, le=MAX_ITEMS)
    """Items per suite (default: each suite's default size)."""
    repeats: int = Field(default=1, ge=1, le=1000)
    """Calls per item per endpoint (for sampled runs)."""
    max_failed_share: float = Field(default=0.2, ge=0, le=1)
    """An endpoint whose calls of a suite failed more often than this gets no score for it (a
    score over the few it answered would mislead), and `bakeoff run` exits 3 (`--allow-errors`
    accepts it). Failed calls never count as wrong answers."""
    cache: bool = False
    """Answer a call from the reply stored for the same request by an earlier run made with the
    cache on (development loops only; such runs keep their replies for it). Off by default: a
    replayed answer is not a measurement of the endpoint today, and every figure that includes one
    says so ("cached"). A resumed run always keeps its own calls, cache or not."""
    seed: int = 0
    """Seed of the suite generators."""
    probe: bool = False
    """Probe each endpoint's capabilities (context, output limit, logprobs, tools, JSON mode, seed
    determinism) after the suites: the capability matrix. Off unless asked: the probes' calls can
    cost more than a small run's suites (`bakeoff probe` runs them alone)."""
    probe_max_context: int = Field(default=8192, ge=256, le=100_000_000)
    """Largest prompt (tokens) the run's context probe sends, so a run against a paid 128k-context
    endpoint stays cheap; `bakeoff probe` searches up to 1.25x the claimed context."""
    stop_when: StopWhen | None = None
    """Stop each endpoint's suite early once its score is precise enough, e.g.
    `stop_when: {ci_width: 0.1}`: items are asked in a seeded random order and the score's
    interval is then an anytime-valid confidence sequence (valid at whatever item the run
    stopped), which the summary reports with `stopped_early`."""
    list_prices: bool = True
    """Price the calls of a hosted preset (openai, openrouter, together, fireworks, groq) that has
    no `price` and reports no cost at the price `genai-prices` lists for its model (the package's
    bundled snapshot, never fetched; cost source `list`)."""
    suite_options: dict[str, dict[str, object]] = Field(default_factory=dict)
    """Per-suite generator options, e.g. `long-context: {max_context: 8192}`."""


DEFAULT_PROMPT = "{{ question }}"


class DatasetSpec(_Strict):
    """Your own data as a suite (`run.suites` then names it like a built-in suite)."""

    name: str
    """The suite name for this dataset."""
    path: str
    """A .jsonl, .json, .csv or .parquet file, a glob of them, a folder of shards, a local Hugging
    Face `datasets` directory (relative paths are resolved against the lineup file), or
    `hf://org/name`, a dataset on the Hugging Face hub (online machines only)."""
    split: str | None = None
    """For a datasets directory with several splits (default: `test`, else the first)."""
    fields: dict[str, str] = Field(default_factory=dict)
    """Template variable → record field; every record must have every mapped field."""
    prompt: str = DEFAULT_PROMPT
    """Jinja template of the user message. Record fields are variables; with `choices`, `options`
    is the lettered list of options ("A. ...")."""
    messages: str | None = None
    """Chat-format records: the field holding the conversation (a list of `{role, content}`),
    sent as it is instead of a template; a last assistant turn is taken off and becomes the target
    (unless `target` names a field). A record with a `messages` list and no `question` is read
    this way under the default prompt too."""
    system: str | None = None
    """Optional Jinja template of a system message."""
    target: str | None = None
    """The field holding the expected answer (for `choice`: a letter, an index or the option text;
    for `code`: a list of {"args": [...], "expected": ...} cases; for `json_schema`: a schema)."""
    choices: str | None = None
    """For `scorer: choice`: the field holding the list of options."""
    id: str | None = None
    """A field with a unique record id (default: a hash of the prompt)."""
    scorer: Literal["exact", "numeric", "regex", "choice", "json_schema", "code", "judge"] = "exact"
    strict: bool = False
    """`exact` ignores case, whitespace runs, Unicode compatibility forms and a trailing `.` or
    `!`; `strict: true` compares byte for byte after stripping surrounding whitespace."""
    judge: str | None = None
    """For `scorer: judge`: the endpoint of the lineup that grades each reply (an LLM judge)."""
    judge_prompt: str | None = None
    """Jinja template of the judge's message (variables: `question`, `reply`, `reference` and the
    record's fields); the judge must answer PASS or FAIL. Default: a short grading rubric."""
    regex: str | None = None
    """For `scorer: regex`: the pattern a correct reply contains (default: the target, escaped)."""
    entry_point: str | None = None
    """For `scorer: code`: the function the tests call."""
    max_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    """Per-item `max_tokens`; default: the lineup's (`defaults.max_tokens`, or the endpoint's
    `params`), like every other sampling field."""

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        if self.scorer == "choice" and not self.choices:
            raise ValueError("scorer: choice needs `choices` (the field holding the options)")
        if self.scorer == "code" and not self.entry_point:
            raise ValueError("scorer: code needs `entry_point` (the function the tests call)")
        if self.scorer == "judge" and not self.judge:
            raise ValueError("scorer: judge needs `judge` (the endpoint that grades the replies)")
        if self.scorer not in ("regex", "judge") and not self.target and not self.messages:
            raise ValueError(f"scorer: {self.scorer} needs `target` (the field with the answer)")
        if self.strict and self.scorer != "exact":
            raise ValueError(f"`strict` is for scorer: exact, not scorer: {self.scorer}")
        if self.regex is not None:
            reply_pattern(self.regex)  # RE2 or refused: a backtracking pattern could hang scoring
        return self


class Lineup(_Strict):
    """A lineup file: endpoints to compare, defaults, and what to run."""

    endpoints: list[Endpoint] = Field(min_length=1)
    reference: str | None = None
    """Name of the endpoint the others are compared with."""
    defaults: Sampling = Field(default_factory=Sampling)
    """Sampling parameters for every endpoint that does not set its own."""
    run: RunSettings = Field(default_factory=RunSettings)
    datasets: list[DatasetSpec] = Field(default_factory=list)
    """Your own datasets, each usable as a suite by its name."""
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @model_validator(mode="after")
    def _check(self) -> Lineup:
        names = [e.name for e in self.endpoints]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"endpoint names must be unique; repeated: {', '.join(dupes)}")
        if self.reference is not None and self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not an endpoint name")
        if self.reference is not None and self.audit.reference == "consensus":
            raise ValueError(
                f"reference {self.reference!r} and audit.reference: consensus: one or the other "
                "(consensus is for a lineup with no designated reference)"
            )
        for ep in self.endpoints:
            if ep.proxy is None:
                continue
            for role, name in ep.proxy.named_endpoints():
                if name not in names:
                    raise ValueError(
                        f"endpoint {ep.name!r}: proxy {role} {name!r} is not an endpoint"
                    )
                if self.endpoint(name).provider == "proxy":
                    raise ValueError(
                        f"endpoint {ep.name!r}: a proxy cannot sit in front of a proxy"
                    )
        return self

    def audits(self) -> bool:
        """The audit runs with the lineup's calls: enabled, two endpoints or more, and a
        `reference:` or `audit.reference: consensus`."""
        chosen = self.reference is not None or self.audit.reference == "consensus"
        return self.audit.enabled and chosen and len(self.endpoints) > 1

    @model_validator(mode="after")
    def _judges(self) -> Lineup:
        names = {e.name for e in self.endpoints}
        for ds in self.datasets:
            if ds.judge is not None and ds.judge not in names:
                raise ValueError(f"dataset {ds.name!r}: judge {ds.judge!r} is not an endpoint")
        return self

    def sampling_for(self, ep: Endpoint) -> dict[str, object]:
        """The effective default body parameters of an endpoint."""
        merged = self.defaults.model_dump()
        if ep.params is not None:
            merged.update(ep.params.model_dump(exclude_unset=True))
        return {k: v for k, v in merged.items() if v is not None}

    def endpoint(self, name: str) -> Endpoint:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)
