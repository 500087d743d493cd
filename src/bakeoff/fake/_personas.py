"""The fake server answering as a given provider does (`FakeConfig.persona`): its error bodies,
the fields it refuses, where and when it puts usage, what usage holds (cost, cached prompt tokens),
and, for OpenRouter, which upstream served the call and the model's upstream listing.

The shapes follow each provider's documentation where it gives them (OpenAI, OpenRouter, Groq,
vLLM/SGLang, llama.cpp's server) and the bodies users have posted in public issue threads
otherwise; they are what the presets are tested against, not a claim about today's wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Required

from typing_extensions import TypedDict


def _oai(message: str, type_: str, code: Any = None) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _vllm(message: str, type_: str, code: int) -> dict[str, object]:
    # vLLM and SGLang: a top-level error object, no `error` wrapper
    return {"object": "error", "message": message, "type": type_, "param": None, "code": code}


_LONG = "This model's maximum context length is 2048 tokens. However, you requested 4096 tokens."


@dataclass(frozen=True)
class Persona:
    name: str
    errors: dict[str, tuple[int, Any]]
    """Fault → (status, JSON body) as this provider sends it."""
    refuses: dict[str, str] = field(default_factory=dict)
    """Body field → the message of the 400 it gets (a field the provider rejects)."""
    usage_always: bool = False
    """Usage in the last stream event even when `stream_options.include_usage` was not asked."""
    usage_in: str = "usage"
    """`usage`, or `x_groq` (Groq's streams: `x_groq.usage` on the last event)."""
    reports_cost: bool = False
    """`usage.cost` in dollars (OpenRouter)."""
    reports_cached: bool = False
    """`usage.prompt_tokens_details.cached_tokens`: a prompt seen before is served from cache."""
    names_upstream: bool = False
    """A `provider` field naming the upstream that served the call (OpenRouter)."""
    silent_truncation: bool = False
    """A prompt over the context is cut, not refused (Ollama): the `context` fault is a reply."""


_OPENAI_ERRORS = {
    "auth": (
        401,
        _oai("Incorrect API key provided: sk-...", "invalid_request_error", "invalid_api_key"),
    ),
    "rate_limit": (429, _oai("Rate limit reached for requests", "requests", "rate_limit_exceeded")),
    "context": (400, _oai(_LONG, "invalid_request_error", "context_length_exceeded")),
    "server_error": (
        500,
        _oai("The server had an error while processing your request.", "server_error"),
    ),
}

PERSONAS: dict[str, Persona] = {
    "openai": Persona("openai", _OPENAI_ERRORS, reports_cached=True),
    "openrouter": Persona(
        "openrouter",
        {
            "auth": (401, {"error": {"code": 401, "message": "No auth credentials found"}}),
            "rate_limit": (
                429,
                {
                    "error": {
                        "code": 429,
                        "message": "Rate limit exceeded",
                        "metadata": {"provider_name": "Upstream"},
                    }
                },
            ),
            "context": (
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "This endpoint's maximum context length is 2048 tokens. "
                        "However, you requested about 4096 tokens.",
                    }
                },
            ),
            "credits": (
                402,
                {
                    "error": {
                        "code": 402,
                        "message": "Insufficient credits. Add more using https://openrouter.ai/credits",
                    }
                },
            ),
            "server_error": (
                502,
                {
                    "error": {
                        "code": 502,
                        "message": "Provider returned error",
                        "metadata": {"raw": "upstream timeout"},
                    }
                },
            ),
        },
        usage_always=True,
        reports_cost=True,
        reports_cached=True,
        names_upstream=True,
    ),
    "together": Persona(
        "together",
        {
            "auth": (
                401,
                _oai(
                    "Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys.",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
            ),
            "rate_limit": (429, _oai("You have been rate limited.", "rate_limit_error")),
            "context": (
                400,
                _oai(
                    "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048. "
                    "Given: 4000 `inputs` tokens and 96 `max_new_tokens`",
                    "invalid_request_error",
                ),
            ),
            "server_error": (500, _oai("Internal server error", "server_error")),
        },
        usage_always=True,
    ),
    "fireworks": Persona(
        "fireworks",
        {
            "auth": (
                401,
                {
                    "error": {
                        "object": "error",
                        "type": "unauthorized",
                        "message": "The API key you provided is invalid.",
                    }
                },
            ),
            "rate_limit": (
                429,
                {
                    "error": {
                        "object": "error",
                        "type": "rate_limit",
                        "message": "Request rate limit exceeded",
                    }
                },
            ),
            "context": (
                400,
                {
                    "error": {
                        "object": "error",
                        "type": "invalid_request_error",
                        "message": "The prompt is too long: 4096, model maximum context length: 2048",
                    }
                },
            ),
            "server_error": (
                500,
                {
                    "error": {
                        "object": "error",
                        "type": "internal_server_error",
                        "message": "Internal server error",
                    }
                },
            ),
        },
    ),
    "groq": Persona(
        "groq",
        {
            "auth": (401, _oai("Invalid API Key", "invalid_request_error", "invalid_api_key")),
            "rate_limit": (
                429,
                _oai(
                    "Rate limit reached for model on tokens per minute (TPM)",
                    "tokens",
                    "rate_limit_exceeded",
                ),
            ),
            "context": (
                400,
                _oai(
                    "Please reduce the length of the messages or completion.",
                    "invalid_request_error",
                    "context_length_exceeded",
                ),
            ),
            "server_error": (500, _oai("Internal Server Error", "internal_server_error")),
        },
        refuses={
            "logprobs": "`logprobs` is not supported",
            "top_logprobs": "`top_logprobs` is not supported",
            "logit_bias": "`logit_bias` is not supported",
        },
        usage_in="x_groq",
    ),
    "deepinfra": Persona(
        "deepinfra",
        {
            "auth": (401, {"detail": {"error": "Unauthorized"}}),
            "rate_limit": (429, {"detail": {"error": "Too many requests"}}),
            "context": (
                400,
                _oai(
                    "Requested token count exceeds the model's maximum context length of 2048 tokens.",
                    "invalid_request_error",
                ),
            ),
            "server_error": (500, {"detail": {"error": "Internal server error"}}),
        },
        usage_always=True,
    ),
    "vllm": Persona(
        "vllm",
        {
            "auth": (401, {"error": "Unauthorized"}),
            "context": (400, _vllm(_LONG, "BadRequestError", 400)),
            "server_error": (500, _vllm("Internal server error", "InternalServerError", 500)),
        },
    ),
    "sglang": Persona(
        "sglang",
        {
            "auth": (401, {"error": "Unauthorized"}),
            "context": (
                400,
                _vllm(
                    "The input (4096 tokens) is longer than the model's context length (2048 tokens).",
                    "BadRequestError",
                    400,
                ),
            ),
            "server_error": (500, _vllm("Internal server error", "InternalServerError", 500)),
        },
    ),
    "llamacpp": Persona(
        "llamacpp",
        {
            "auth": (
                401,
                {
                    "error": {
                        "code": 401,
                        "message": "Invalid API Key",
                        "type": "authentication_error",
                    }
                },
            ),
            "context": (
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "the request exceeds the available context size, try increasing it",
                        "type": "exceed_context_size_error",
                        "n_prompt_tokens": 4096,
                        "n_ctx": 2048,
                    }
                },
            ),
            "server_error": (
                500,
                {"error": {"code": 500, "message": "internal error", "type": "server_error"}},
            ),
        },
    ),
    "ollama": Persona(
        "ollama",
        {
            "server_error": (500, _oai("llama runner process has terminated", "api_error")),
        },
        silent_truncation=True,
    ),
    "lmstudio": Persona(
        "lmstudio",
        {
            "context": (
                400,
                {
                    "error": "Trying to keep the first 4096 tokens when context the overflows. However, the "
                    "model is loaded with context length of only 2048 tokens, which is not enough."
                },
            ),
            "server_error": (500, {"error": "Unexpected endpoint or method."}),
        },
    ),
}
"""Each preset's fake: the same name as the preset (`provider: groq` ↔ persona `groq`)."""


def refused(persona: Persona, body: dict[str, object]) -> tuple[int, Any] | None:
    """The 400 this provider answers a body holding a field it refuses, if any."""
    for key, message in persona.refuses.items():
        if key in body and body[key] not in (None, False):
            return 400, _oai(message, "invalid_request_error")
    if persona.name == "groq" and body.get("n") not in (None, 1):
        return 400, _oai("'n' : number must be at most 1", "invalid_request_error")
    return None


@dataclass
class Ledger:
    """What the persona billed: per request its usage and cost (OpenRouter's own figure)."""

    seen_prompts: set[str] = field(default_factory=set)
    costs: list[float] = field(default_factory=list)


def usage_for(
    persona: Persona | None,
    ledger: Ledger,
    prompt: str,
    usage: dict[str, int],
    price_per_m: tuple[float, float, float],
) -> dict[str, object]:
    """The usage object as the persona reports it; its cost is added to the ledger."""
    out: dict[str, object] = dict(usage)
    if persona is None:
        return out
    cached = 0
    if persona.reports_cached:
        cached = usage["prompt_tokens"] if prompt in ledger.seen_prompts else 0
        ledger.seen_prompts.add(prompt)
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    if persona.reports_cost:
        p_in, p_out, p_cache = price_per_m
        cost = (
            (usage["prompt_tokens"] - cached) * p_in
            + cached * p_cache
            + usage["completion_tokens"] * p_out
        ) / 1e6
        ledger.costs.append(cost)
        out["cost"] = cost
    return out


class Upstream(TypedDict, total=False):
    """An upstream of the `openrouter` persona's model, as its endpoints listing shows it."""

    name: Required[str]
    tag: Required[str]
    quantization: str | None
    context_length: int
    max_completion_tokens: int | None
    prompt_per_m: float
    completion_per_m: float
    cache_read_per_m: float
    supported_parameters: list[str]
    backend: str
    """Base URL of a real server answering for this upstream (`http://127.0.0.1:PORT/v1`): calls
    routed to it are forwarded there (`_openrouter.py`); unset, the fake answers them itself."""
    backend_model: str
    """The `model` the backend is asked for (default: the call's own)."""


def endpoints_listing(model: str, upstreams: list[Upstream]) -> dict[str, object]:
    """OpenRouter's `GET /models/{author}/{slug}/endpoints` for the fake's upstreams."""
    return {
        "data": {
            "id": model,
            "name": model,
            "architecture": {"tokenizer": "Other", "instruct_type": None, "modality": "text->text"},
            "endpoints": [
                {
                    "name": f"{u['name']} | {model}",
                    "model_name": model,
                    "context_length": u.get("context_length", 2048),
                    "pricing": {
                        "prompt": f"{u.get('prompt_per_m', 1.0) / 1e6:.10f}",
                        "completion": f"{u.get('completion_per_m', 2.0) / 1e6:.10f}",
                        "request": "0",
                        "image": "0",
                        **(
                            {"input_cache_read": f"{u['cache_read_per_m'] / 1e6:.10f}"}
                            if "cache_read_per_m" in u
                            else {}
                        ),
                    },
                    "provider_name": u["name"],
                    "tag": u["tag"],
                    "quantization": u.get("quantization"),
                    "max_completion_tokens": u.get("max_completion_tokens"),
                    "max_prompt_tokens": None,
                    "supported_parameters": u.get(
                        "supported_parameters", ["max_tokens", "temperature", "top_p", "seed"]
                    ),
                    "status": 0,
                    "uptime_last_30m": 99.0,
                }
                for u in upstreams
            ],
        }
    }
