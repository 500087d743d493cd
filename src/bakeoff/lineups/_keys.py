"""The one place that says what a lineup may do with credentials: name a variable (never hold a
key), and only a variable whose name says it is an LLM API key, unless the user running bakeoff
allows another by name. A lineup may come from someone else: it must not be able to send the
user's cloud or CI credentials (`AWS_SECRET_ACCESS_KEY`, `GITHUB_TOKEN`) to its own URL.

Every message here names the field, never the value that looked like a key.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

ALLOW_ENV = "BAKEOFF_ALLOW_ENV"
"""Variable listing (comma- or space-separated) the key variables a lineup may name beyond the
rule, as `--allow-env NAME` does on the command line."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

KEY_PREFIXES = (
    "sk-",  # OpenAI, OpenRouter (sk-or-), Anthropic (sk-ant-), DeepSeek
    "sk_",
    "gsk_",  # Groq
    "fw_",  # Fireworks
    "hf_",  # Hugging Face
    "xai-",  # xAI
    "pplx-",  # Perplexity
    "nvapi-",  # NVIDIA
    "r8_",  # Replicate
    "tgp_",  # Together
    "csk-",  # Cerebras
    "AIza",  # Google
    "AKIA",  # AWS access key id
    "ASIA",
    "ghp_",  # GitHub
    "gho_",
    "ghs_",
    "github_pat_",
    "glpat-",  # GitLab
    "xox",  # Slack
    "eyJ",  # a JWT
)
"""How the keys of known services begin: a value that begins so is a key, not a name."""

LLM_KEY_NAME = re.compile(r"^[A-Za-z0-9_]*(API_KEY|_KEY|_TOKEN)$", re.IGNORECASE)
"""The names an LLM API key goes by (`OPENROUTER_API_KEY`, `VLLM_KEY`, `HF_TOKEN`)."""

NOT_LLM_KEY = re.compile(
    r"^(AWS|AMAZON|GITHUB|GH|GITLAB|CI|ACTIONS|RUNNER|BITBUCKET|CIRCLE|TRAVIS|BUILDKITE|JENKINS"
    r"|NPM|NODE_AUTH|PYPI|TWINE|POETRY|CARGO|DOCKER|REGISTRY|SSH|GPG|VAULT|CONSUL|TF|TERRAFORM"
    r"|ARM|AZURE_CLIENT|AZURE_STORAGE|GOOGLE_APPLICATION|GCP|GCLOUD|CLOUDSDK|KUBE|HEROKU"
    r"|NETLIFY|VERCEL|STRIPE|SLACK|TWILIO|SENDGRID|DATADOG|DD|SENTRY|CODECOV|SONAR|SNYK"
    r"|CLOUDFLARE|CF|DIGITALOCEAN|LINODE|HCLOUD|FLY|DATABASE|PG|POSTGRES|MYSQL|REDIS|MONGO"
    r"|SMTP|MAIL)_"
    r"|PASSWORD|PASSWD|SECRET_ACCESS_KEY|SESSION_TOKEN|PRIVATE_KEY|CLIENT_SECRET",
    re.IGNORECASE,
)
"""Well-known credentials of other services (cloud, CI, registries, databases): refused even when
the name ends in `_KEY` or `_TOKEN`, unless the user allows the variable by name."""

_SECRET_PARAMS = {"key", "api_key", "apikey", "api-key", "token", "access_token", "password"}


def looks_like_key(value: str) -> bool:
    """A known service's key prefix, or a long run of letters and digits as random as a key's
    (a variable's name is words: `OPENROUTER_API_KEY`)."""
    for prefix in KEY_PREFIXES:
        if (
            value.startswith(prefix)
            and len(re.sub(r"[^A-Za-z0-9]", "", value[len(prefix) :])) >= 12
        ):
            return True  # a key's body is long: `hf_token` is a name, `hf_AbC...` a key
    for run in re.findall(r"[A-Za-z0-9]{20,}", value):
        mixed = any(c.isdigit() for c in run) and any(c.isalpha() for c in run)
        if mixed and _entropy(run) >= 3.5:
            return True
    return False


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def variable_name_problem(name: str) -> str | None:
    """What is wrong with `api_key_env` as written in the file (None: a variable's name)."""
    if looks_like_key(name):
        return (
            "this looks like an API key: give the NAME of an environment variable, not a key; "
            "literal keys are refused (the value is not shown)"
        )
    if not _NAME.match(name):
        return (
            "must be the NAME of an environment variable (like OPENROUTER_API_KEY), "
            "not a key; literal keys are refused"
        )
    return None


def key_variable_problem(
    name: str, *, default: str | None = None, allowed: Iterable[str] = ()
) -> str | None:
    """Whether a lineup may send the value of variable `name` to its endpoint (None: it may). The
    preset's own variable (`default`) and any the user allowed may; else the name must look like an
    LLM API key's (`*_API_KEY`, `*_KEY`, `*_TOKEN`) and not be another service's credential."""
    problem = variable_name_problem(name)
    if problem is not None:
        return problem
    if name == default or name in set(allowed):
        return None
    if NOT_LLM_KEY.search(name) or not LLM_KEY_NAME.match(name):
        why = (
            "is another service's credential"
            if NOT_LLM_KEY.search(name)
            else "does not look like an LLM API key's name (*_API_KEY, *_KEY, *_TOKEN)"
        )
        return (
            f"api_key_env {name} {why}: its value would be sent to this endpoint. If you mean it, "
            f"allow it yourself: --allow-env {name} (or {ALLOW_ENV}={name})"
        )
    return None


_ALLOWED: set[str] = set()
"""The names `--allow-env` gave in this process (`allow`)."""


def allow(names: Iterable[str]) -> None:
    """The user (the command line, never a lineup) allows these key variables."""
    _ALLOWED.update(n for n in names if n)


def allowed_variables(environ: Mapping[str, str] | None = None) -> set[str]:
    """The variables the user allowed: `--allow-env` names and those `BAKEOFF_ALLOW_ENV` lists."""
    env = os.environ if environ is None else environ
    listed = re.split(r"[,\s]+", env.get(ALLOW_ENV, ""))
    return {n for n in (*_ALLOWED, *listed) if n}


def url_credential_problem(url: str) -> str | None:
    """A credential written into a URL (`http://user:key@host`, `?api_key=...`): refused like a
    literal key, the value not shown."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "is not a valid URL"
    if "@" in parts.netloc:
        return (
            "a user or password in the URL (user:key@host) would put a credential in the lineup "
            "file (the value is not shown); put the key in a variable and name it with api_key_env"
        )
    for k, v in query:
        if k.lower() in _SECRET_PARAMS or looks_like_key(v) or looks_like_key(k):
            return (
                "a query parameter of the URL (key=, token=, or a value like a key) would put a "
                "credential in the lineup file (the value is not shown); put the key in a "
                "variable and name it with api_key_env"
            )
    return None
