"""What the analysis asks of a token scorer (`ReferenceScorer`) and of the store it reads
(`AuditReads`), as protocols: the GGUF scorer in-process, the HTTP and vLLM scorers, and
`StoredScorer` answer the first; the `Store` and `_source.CallSource` (a snapshot, or a bundle)
the second."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from bakeoff.audit._scorer import TokenScores

Messages = list[dict[str, object]]
"""Chat messages as they go to a model (OpenAI's form)."""


class ReferenceScorer(Protocol):
    """Teacher forcing under a model: the tokens of a chat prompt, and per completion token its
    log-probability, rank and the probability ranked above it (`TokenScores`)."""

    def prompt_tokens(self, messages: Messages, /) -> list[int]: ...

    def score(
        self, prompt_tokens: list[int], completion: str, rng: np.random.Generator | None = None, /
    ) -> TokenScores: ...


ScorerLoad = Callable[[], ReferenceScorer]
"""A scorer's loader: called on first need (loading a GGUF takes seconds; a rerun may need none)."""


class Cells(Protocol):
    """A row by column name: a `sqlite3.Row`, a PostgreSQL row, or a dict read back from JSON."""

    def __getitem__(self, key: str, /) -> Any: ...


class AuditReads(Protocol):
    """The three reads `analyse` makes of a store (`Store`, or `CallSource` in memory)."""

    def calls(self, run_id: str, /) -> Sequence[Cells]: ...

    def tool_calls(self, run_id: str, endpoints: tuple[str, ...], /) -> Sequence[Cells]: ...

    def score_sums(
        self, run_id: str, scorer: str, endpoints: tuple[str, ...], /
    ) -> dict[str, float]: ...
