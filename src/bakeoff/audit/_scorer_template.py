"""The reference's chat template for a scorer server that has none to offer (a hosted provider: no
`/apply-template`, no `/tokenize` with messages): `audit.scorer_template`, given as

- the Jinja text itself (it holds `{{` or `{%`), or
- a file (relative to the lineup file): a Hugging Face `tokenizer_config.json` — its
  `chat_template` (a string, or a list of named templates: the one named `default`), with its
  `bos_token` and `eos_token` (a string, or an object with `content`) — or a Jinja file.

A file that cannot be read, is not UTF-8, or holds no template is one `AuditError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from bakeoff.audit._errors import AuditError

MAX_TEMPLATE_BYTES = 16 * 1024 * 1024
"""The most a template file may hold (a tokenizer_config.json with a large added-tokens table
is a few MB)."""


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template and the BOS and EOS texts it is rendered with."""

    template: str
    bos_token: str = ""
    eos_token: str = ""


def is_inline(spec: str) -> bool:
    """`scorer_template` holds the template's text, not a file's name."""
    return "{{" in spec or "{%" in spec


def chat_template_of(spec: str, base: Path | None = None) -> ChatTemplate:
    """The template `scorer_template` gives: inline, or read from its file (`base`: the folder a
    relative path is taken from; the lineup's loader has already made it absolute)."""
    if is_inline(spec):
        return ChatTemplate(spec)
    path = Path(spec).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    what = f"audit.scorer_template: {path}"
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as e:
        raise AuditError(f"{what}: cannot read it ({e.strerror or type(e).__name__})") from None
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise AuditError(f"{what}: over {MAX_TEMPLATE_BYTES:,} bytes; not a chat template")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AuditError(f"{what}: not UTF-8 text") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith('{"'):
        return _from_config(text, what)
    if not is_inline(text):
        raise AuditError(f"{what}: holds no Jinja template (no {{{{ or {{% in it)")
    return ChatTemplate(text)


def _from_config(text: str, what: str) -> ChatTemplate:
    """A tokenizer config's `chat_template` with its BOS and EOS texts."""
    try:
        cfg = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise AuditError(f"{what}: not JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise AuditError(f"{what}: not a tokenizer config (a JSON object)")
    template = cfg.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if not isinstance(template, str) or not template.strip():
        raise AuditError(
            f"{what}: no `chat_template` in it (a tokenizer_config.json of a chat model has one; "
            "or give the Jinja file)"
        )
    return ChatTemplate(template, _token(cfg.get("bos_token")), _token(cfg.get("eos_token")))


def _token(v: object) -> str:
    """A special token's text: a string, or an added token's `content`."""
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else ""
