"""What a new file's rows are checked against: the test split's texts (a leak), the archive's
labelled training reviews, and every row accepted before or held and still waiting (a
duplicate). Built on first use, so a night whose files were all ingested before never reads
the archive's keys; it grows as the files of one ingest are published."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pyarrow as pa

from tasks.data.accepted import AcceptedFile, read_accepted
from tasks.ingest.validate import Validated, validate_rows

# () -> (text keys of the test split, text keys of the archive's labelled training reviews)
Reference = Callable[[], tuple[frozenset[str], frozenset[str]]]


class KnownRows:
    """The ids and text keys known to one ingest. `accepted` and `held` are the ingest's own
    maps of published files (sha256 -> folder), read when the keys are first built; `waiting`
    says whether a held file still waits for an operator (its rows count as known: a release
    must not bring in duplicates; a rejected file's do not)."""

    def __init__(
        self,
        reference: Reference,
        accepted: Mapping[str, AcceptedFile],
        held: Mapping[str, AcceptedFile],
        waiting: Callable[[str], bool],
    ) -> None:
        self._reference = reference
        self._accepted = accepted
        self._held = held
        self._waiting = waiting
        self._built: tuple[frozenset[str], frozenset[str], set[str], set[str]] | None = None

    def _keys(self) -> tuple[frozenset[str], frozenset[str], set[str], set[str]]:
        """(leak keys, archive keys, known ids, known text keys)."""
        if self._built is None:
            leak_keys, archive_keys = self._reference()
            waiting = [f for sha, f in self._held.items() if self._waiting(sha)]
            prior = read_accepted([*self._accepted.values(), *waiting])
            ids = set(prior.column("id").to_pylist())
            keys = set(archive_keys) | set(prior.column("text_key").to_pylist())
            self._built = (leak_keys, archive_keys, ids, keys)
        return self._built

    def validate(self, table: pa.Table, sha256: str, max_chars: int) -> Validated:
        """The row checks of `table`, against everything known but the file's own rows (an
        interrupted ingest of the same file may have left them)."""
        leak_keys, archive_keys, ids, keys = self._keys()
        own = self._accepted.get(sha256) or self._held.get(sha256)
        if own is not None:  # its own rows are no duplicates of it: compare with the rest
            rows = read_accepted([own])
            own_keys = set(rows.column("text_key").to_pylist())
            ids = ids - set(rows.column("id").to_pylist())
            keys = (keys - own_keys) | (own_keys & archive_keys)
        return validate_rows(
            table, sha256, known_ids=ids, known_keys=keys, leak_keys=leak_keys, max_chars=max_chars
        )

    def add(self, rows: pa.Table) -> None:
        """Published rows (ACCEPTED_SCHEMA): later files repeating them are duplicates."""
        _, _, ids, keys = self._keys()
        ids.update(rows.column("id").to_pylist())
        keys.update(rows.column("text_key").to_pylist())
