"""A stored run's records for the rules, read as they are asked for, not all at once.

Building every tensor record of a long run costs far more than the rules that read it (a run
of 1,000 steps x 100 calls holds 300,000 of them). :class:`StoredRecords` answers the cheap
views of :class:`~tracer.checks.view.RunRecords` with narrow queries (the calls alone, chosen
columns of chosen roles, per-step facts the database computes) and reads a step's whole flow
only when a rule asks for it, in batches. Every view gives what the same view gives over the
flows in memory (tested on the same runs).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any

from tracer.checks.view import RunRecords, StepFacts
from tracer.records import CallRecord, RunInfo
from tracer.store import Store
from tracer.store.rows import CALL_COLUMNS, call_record

#: How many steps' flows are read in one go when a rule walks them.
BATCH = 64


class LazyFlows(Mapping[int, Sequence[CallRecord]]):
    """The checked steps' flows, each read from the store the first time it is asked for."""

    def __init__(self, store: Store, run_id: int, steps: Sequence[int]) -> None:
        self.store = store
        self.run_id = run_id
        self.steps = tuple(steps)
        self._index = {step: i for i, step in enumerate(self.steps)}
        self._read: dict[int, Sequence[CallRecord]] = {}

    def __getitem__(self, step: int) -> Sequence[CallRecord]:
        found = self._read.get(step)
        if found is None:
            if step not in self._index:
                raise KeyError(step)
            # walking steps in order is the common case: read the next ones along with it
            at = self._index[step]
            self.load(self.steps[at : at + BATCH])
            found = self._read[step]
        return found

    def __iter__(self) -> Iterator[int]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __contains__(self, step: object) -> bool:
        return step in self._index

    def load(self, steps: Iterable[int]) -> None:
        """Read the flows of ``steps`` not read yet, in one query per table."""
        missing = [s for s in steps if s not in self._read]
        if not missing:
            return
        flows = self.store.flows(self.run_id, missing)
        for step in missing:
            self._read[step] = flows.get(step, [])


#: Where each CallRecord attribute sits in a row of Store.call_rows.
_CALL_FIELDS = {name: i for i, name in enumerate(CALL_COLUMNS[1:])}


class LazySkeleton(Mapping[int, Sequence[CallRecord]]):
    """Each step's calls as CallRecords without tensors, built from the rows when first asked."""

    def __init__(self, steps: Sequence[int], found: Sequence[tuple[Any, ...]]) -> None:
        self.steps = tuple(steps)
        self._rows: dict[int, list[tuple[Any, ...]]] = {step: [] for step in self.steps}
        for row in found:
            self._rows[row[0]].append(row)
        self._built: dict[int, list[CallRecord]] = {}

    def __getitem__(self, step: int) -> Sequence[CallRecord]:
        built = self._built.get(step)
        if built is None:
            built = [call_record(row[0], row[1:], ()) for row in self._rows[step]]
            self._built[step] = built
        return built

    def __iter__(self) -> Iterator[int]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class StoredRecords(RunRecords):
    """:class:`RunRecords` of a stored run: ``flows`` is a :class:`LazyFlows` of the checked
    steps, fixed when it is made (a run still being written is checked up to its steps then)."""

    store: Store | None = None

    @classmethod
    def read(cls, store: Store, run: RunInfo, steps: Iterable[int] | None = None) -> StoredRecords:
        recorded = store.steps(run.id)
        if steps is not None:
            chosen = set(steps)
            recorded = [s for s in recorded if s in chosen]
        flows = LazyFlows(store, run.id, recorded)
        return cls(run=run, flows=flows, modules=store.module_tree(run.id), store=store)

    @property
    def _store(self) -> Store:
        assert self.store is not None, "StoredRecords are made by StoredRecords.read"
        return self.store

    @cached_property
    def steps(self) -> tuple[int, ...]:
        return tuple(self.flows)  # LazyFlows keeps them ascending

    def flows_at(self, steps: Iterable[int]) -> Iterator[tuple[int, Sequence[CallRecord]]]:
        chosen = list(steps)
        flows = self.flows
        assert isinstance(flows, LazyFlows)
        for start in range(0, len(chosen), BATCH):
            batch = chosen[start : start + BATCH]
            flows.load(batch)
            for step in batch:
                yield step, flows[step]

    @cached_property
    def _call_rows(self) -> list[tuple[Any, ...]]:
        return self._store.call_rows(self.run.id, self.steps)

    @cached_property
    def skeleton(self) -> Mapping[int, Sequence[CallRecord]]:
        return LazySkeleton(self.steps, self._call_rows)

    def call_values(self, fields: Sequence[str]) -> list[tuple[Any, ...]]:
        at = [_CALL_FIELDS[f] for f in fields]
        found = self._call_rows
        if not at:
            return [row[:2] for row in found]
        if len(at) == 1:
            i = at[0]
            return [(row[0], row[1], row[i]) for row in found]
        get = itemgetter(0, 1, *at)
        return [get(row) for row in found]

    def values(
        self, roles: Collection[str], fields: Sequence[str], *, nonfinite: bool = False
    ) -> list[tuple[Any, ...]]:
        return self._store.tensor_values(
            self.run.id, self.steps, roles, fields, nonfinite=nonfinite
        )

    @cached_property
    def facts(self) -> dict[int, StepFacts]:
        found = self._store.step_facts(self.run.id, self.steps)
        empty = StepFacts(frozenset(), frozenset(), False, False, False)
        return {step: StepFacts(*found[step]) if step in found else empty for step in self.steps}
