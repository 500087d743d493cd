"""The sections of an endpoint bakeoff starts itself: `fake`, `local` and `proxy`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    # every number is finite; each field has an upper bound a real lineup stays far below
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FakeSpec(_Strict):
    """For `provider: fake`: the fake server bakeoff starts on loopback for this endpoint."""

    mode: Literal["echo", "script", "fixed"] = "echo"
    """`echo` repeats the last user message, `script` answers from `script`, `fixed` says `reply`."""
    script: dict[str, str | dict[str, object]] = Field(default_factory=dict)
    """Exact last user message → reply text, or → `{content, tool_calls: [{name, arguments}]}`
    (mode `script`; unknown prompts get `reply`)."""
    script_file: str | None = None
    """A JSON file with the same mapping (relative to the lineup file)."""
    reply: str = "I don't know."
    ttft_ms: float = Field(default=0.0, ge=0, le=3_600_000)
    itl_ms: float = Field(default=0.0, ge=0, le=3_600_000)
    reply_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    """Mode `fixed`: a reply of exactly this many tokens (for load tests)."""
    capacity: int | None = Field(default=None, ge=1, le=1_000_000)
    """Requests served at once; more wait in a queue (a server's batch limit)."""
    faults: dict[str, float] = Field(default_factory=dict)
    """Fault name → probability per request (see `bakeoff fake-server --help`)."""
    seed: int = 0


class LocalSpec(_Strict):
    """For `provider: local`: a server bakeoff starts for the run, serving one variant of the
    packaged SmolLM2-135M-Instruct (quantized into the user cache dir on first use) on one of two
    engines (`engine`)."""

    variant: str = "F16"
    """F16 (the reference: shipped weights dequantized), F32, Q8_0, Q4_K_M, Q3_K_S, Q2_K, or Q4_1
    (the shipped file itself)."""
    engine: Literal["llama.cpp", "transformers"] = "llama.cpp"
    """`llama.cpp`: llama-cpp-python's server. `transformers`: bakeoff's own small OpenAI-compatible
    server over PyTorch on CPU in float32 (the GGUF dequantized by transformers, its own chat
    template): the same weights on another engine, an honest provider for the fidelity audit.
    It batches concurrent requests (`max_batch`), so a request's numerics depend on the load, as
    on real providers, and its sampler defaults are neutral (no repetition penalty, top_k or
    min_p, where llama.cpp's server applies 1.1 / 40 / 0.05)."""
    n_threads: int | None = Field(default=None, ge=1, le=4096)
    """Threads of this server (default: the machine's cores split between the local servers)."""
    n_ctx: int = Field(default=2048, ge=64, le=10_000_000)
    """Context window the server allocates."""
    n_batch: int | None = Field(default=None, ge=1, le=1_000_000)
    """Prompt tokens evaluated per step (llama.cpp's default 512): another batch size gives other
    floating-point rounding, the same model (a null for the fidelity audit). llama.cpp only."""
    max_batch: int | None = Field(default=None, ge=1, le=4096)
    """Engine `transformers`: requests run together in one batch at most (default 8; 1: never
    batched)."""
    forced_repetition_penalty: float | None = Field(default=None, gt=0, le=100)
    """Engine `transformers`, a test and calibration knob: apply this repetition penalty to every
    request, whatever the request says — a provider whose sampler cannot be switched off."""
    port: int = Field(default=0, ge=0, le=65535)
    """Loopback port (0: a free one)."""
    seed: int = 0

    @model_validator(mode="after")
    def _engine_settings(self) -> LocalSpec:
        if self.engine == "transformers" and self.n_batch is not None:
            raise ValueError(
                "n_batch is llama.cpp's prompt batch size; engine transformers has none "
                "(remove it; max_batch sets how many requests run together)"
            )
        if self.engine == "llama.cpp":
            for k in ("max_batch", "forced_repetition_penalty"):
                if getattr(self, k) is not None:
                    raise ValueError(f"{k} is a setting of engine transformers (set engine too)")
        return self


class ProxySpec(_Strict):
    """For `provider: proxy`: a distortion proxy on loopback in front of another endpoint of the
    lineup — a provider that silently does something wrong, with a known fault."""

    target: str
    """Name of the endpoint behind the proxy."""
    truncate_prompt_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    """Silently keep only the last N prompt tokens (oldest content dropped; the request stays valid)."""
    inject_system: str | None = None
    """Prepend this system prompt to every chat request."""
    force_greedy: bool = False
    """Ignore the client's temperature/top_p: always greedy (temperature 0)."""
    route_fraction: float = Field(default=0.0, ge=0, le=1)
    """Send this fraction of requests to `route_to` instead (drawn per request from `seed`)."""
    route_to: str | None = None
    cap_output_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    """Cap max_tokens at N (the endpoint then stops with finish_reason `length`)."""
    added_latency_ms: float = Field(default=0.0, ge=0, le=3_600_000)
    """Delay before forwarding each request."""
    switch_to: str | None = None
    """After `switch_after_calls` requests, send every later one to this endpoint instead: an
    endpoint that silently changes what it serves (what `bakeoff watch` must catch)."""
    switch_after_calls: int | None = Field(default=None, ge=0, le=1_000_000_000)
    """Requests (chat or completions; listings not counted) forwarded to `target` before the switch."""
    switch_for_calls: int | None = Field(default=None, ge=1, le=1_000_000_000)
    """Requests sent to `switch_to` before going back to `target` (unset: never back): a
    transient change, such as a provider's brief misroute."""
    seed: int = 0

    @model_validator(mode="after")
    def _route(self) -> ProxySpec:
        if self.route_fraction > 0 and not self.route_to:
            raise ValueError("route_fraction needs route_to (the endpoint to send them to)")
        if (self.switch_to is None) != (self.switch_after_calls is None):
            raise ValueError("switch_to and switch_after_calls go together")
        if self.switch_for_calls is not None and self.switch_to is None:
            raise ValueError("switch_for_calls needs switch_to and switch_after_calls")
        return self

    def named_endpoints(self) -> list[tuple[str, str]]:
        """(role, endpoint name) of every endpoint of the lineup this proxy sends requests to."""
        roles = (
            ("target", self.target),
            ("route_to", self.route_to),
            ("switch_to", self.switch_to),
        )
        return [(role, name) for role, name in roles if name is not None]
