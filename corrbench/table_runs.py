"""Local runs in ``corrbench table``: which run fills a cell, how a row's configuration is labelled, and
whether a cell scored its column's reference pair set.

A row is one configuration: the method's class, every option, its weights, the autocast dtype and the seed
(what ``corrbench run`` puts in a run's identity, less the benchmark). A column group is one benchmark
version under one protocol. Each cell shows the newest complete run of its row and column; a ``--limit``
run fills a cell only when partial runs are asked for and no complete run exists.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Iterable

from .files import json_identity_hash
from .metrics import SKIP_NO_VALID
from .protocol import Protocol
from .protocols import PRESETS, recorded_protocol

# Cell markers (a row's label says *what* ran; these say *on which pairs*).
MARK_OTHER_PAIRS = "†"
MARK_PARTIAL = "‡"
_SHORT_VALUE = 24  # option values longer than this are shortened in labels (paths to their file name)
_DEFAULT_SCORING = Protocol()


def protocol_name(result: dict[str, Any]) -> str:
    return recorded_protocol(result["benchmark"])[1]


def base_benchmark(result: dict[str, Any]) -> str:
    """The benchmark a run scored, without its protocol: ``spair71k`` for ``spair71k-geoaware`` runs."""
    return recorded_protocol(result["benchmark"])[0]


def column_of(result: dict[str, Any]) -> tuple[str, int, str, str]:
    """(base benchmark, version, protocol name, scoring fingerprint): runs share a column only when all agree.

    A run under a named protocol is recorded as ``<base>-<protocol>``; its column is the base benchmark's
    under that protocol, so ``spair71k`` and ``spair71k (geoaware)`` sit side by side. The fingerprint keeps
    runs apart whose protocol fields differ under one name and version (a preset changed between two runs).
    """
    return (base_benchmark(result), int(result["benchmark"]["version"]), protocol_name(result),
            scoring_fingerprint(result))


def scoring_fingerprint(result: dict[str, Any]) -> str:
    """A short hash of the protocol fields a run was scored with. Fields an older result lacks take their
    defaults (they were added with those defaults' behaviour); the name is left out (it is in the column key)."""
    recorded = result["benchmark"]["protocol"]
    known = {f.name for f in dataclasses.fields(Protocol)} - {"name"}
    fields = dataclasses.asdict(Protocol(**{k: v for k, v in recorded.items() if k in known}))
    fields.pop("name")
    return json_identity_hash(fields)[:8]


def scoring_note(result: dict[str, Any]) -> str:
    """How a run was scored, for the note under its column: the protocol fields and the named protocol's data
    options; fields an older result lacks are left out."""
    bench, proto = result["benchmark"], result["benchmark"]["protocol"]
    name = protocol_name(result)
    parts = [f"v{bench['version']}", f"protocol {name}", f"threshold {proto['threshold']}",
             f"comparison {proto['comparison']}", f"frame {proto['frame']}"]
    # fields that move numbers but were added later: named only where they are not corrbench's default
    for key, label in (("arithmetic", "arithmetic"), ("dagger_candidates", "PCK-dagger candidates")):
        if proto.get(key, getattr(_DEFAULT_SCORING, key)) != getattr(_DEFAULT_SCORING, key):
            parts.append(f"{label} {proto[key]}")
    preset = PRESETS.get(name)
    options = bench.get("adapter_options", {})
    parts += [f"{key}={options[key]}" for key in (preset.adapter_options if preset else ()) if key in options]
    parts.append(f"split {bench['split']}")
    return ", ".join(parts)


def data_warning(result: dict[str, Any]) -> str | None:
    """What the dataset adapter warned about the data a run read (``benchmark.data.warning``: e.g. an AP-10K
    folder built without the published crowd list), or None."""
    return result["benchmark"].get("data", {}).get("warning")


def configuration(result: dict[str, Any]) -> dict[str, Any]:
    """What made the predictions, apart from the benchmark: one table row per distinct value."""
    method, env = result["method"], result.get("env", {})
    return {
        "method": method["name"],
        "class": method.get("class"),
        "config": method.get("config", {}),
        "weights": method.get("weights"),
        "dtype": env.get("dtype"),
        "seed": env.get("seed"),
    }


def row_key(result: dict[str, Any]) -> str:
    return json_identity_hash(configuration(result))


@dataclass(frozen=True)
class Coverage:
    """Which pairs a run scored, against the pairs its benchmark lists."""

    scored: int  # pairs the run scored (pairs without a valid keypoint included: the protocol drops those)
    listed: int  # pairs in the benchmark's list, those skipped while reading included
    partial: bool  # a --limit run
    pairs_fingerprint: str
    skipped: dict[str, int]  # reason -> pairs, as the result counts them

    @property
    def whole_list(self) -> bool:
        return not self.partial and self.scored == self.listed

    def describe(self) -> str:
        read_skips = {r: n for r, n in self.skipped.items() if r != SKIP_NO_VALID}
        text = f"{self.scored} of {self.listed} listed pairs"
        if self.partial:
            return text + " (--limit run)"
        if read_skips:
            text += " (skipped: " + ", ".join(f"{n} {r}" for r, n in read_skips.items()) + ")"
        return text


def coverage(result: dict[str, Any]) -> Coverage:
    counts = result["counts"]
    skipped = dict(counts.get("skipped", {}))
    scored = int(counts["pairs"]) + int(skipped.get(SKIP_NO_VALID, 0))
    return Coverage(
        scored=scored,
        listed=int(counts.get("pairs_listed", scored)),
        partial=bool(result.get("partial", False)),
        pairs_fingerprint=result["benchmark"].get("pairs_fingerprint", ""),
        skipped=skipped,
    )


def usable_runs(results: Iterable[dict[str, Any]], *, partial: bool) -> list[dict[str, Any]]:
    """The runs a table may show: complete ones, and --limit ones when ``partial``."""
    return [r for r in results if partial or not r.get("partial", False)]


def select_cells(results: Iterable[dict[str, Any]], *, partial: bool) -> dict[tuple[str, tuple], dict[str, Any]]:
    """(row key, column) -> the run that fills the cell among ``usable_runs``: complete before partial, then the
    newest."""
    chosen: dict[tuple[str, tuple], dict[str, Any]] = {}
    for result in usable_runs(results, partial=partial):
        key = (row_key(result), column_of(result))
        rank = (not result.get("partial", False), result["created_at"])
        best = chosen.get(key)
        if best is None or rank > (not best.get("partial", False), best["created_at"]):
            chosen[key] = result
    return chosen


def reference_pairs(results: Iterable[dict[str, Any]]) -> dict[tuple, tuple[str | None, int]]:
    """Per column: the reference pair set's fingerprint, and how many different whole-list pair sets exist.

    The reference is the pair set of the runs that scored the benchmark's whole list (no --limit, nothing
    skipped while reading). Runs of one benchmark version normally agree; they differ when the data was
    built differently (another crowd rule, another download), and then the set most runs share is the
    reference (ties: the newest run's). A column without any whole-list run has no reference.
    """
    votes: dict[tuple, Counter] = defaultdict(Counter)
    newest: dict[tuple, dict[str, str]] = defaultdict(dict)
    for result in results:
        cov = coverage(result)
        if cov.whole_list:
            column = column_of(result)
            votes[column][cov.pairs_fingerprint] += 1
            seen = newest[column].get(cov.pairs_fingerprint, "")
            newest[column][cov.pairs_fingerprint] = max(seen, result["created_at"])
    return {
        column: (max(counter, key=lambda fp: (counter[fp], newest[column][fp])), len(counter))
        for column, counter in votes.items()
    }


def pair_marker(result: dict[str, Any], reference: str | None) -> str:
    """'' when the cell scored its column's reference pair set, else the marker saying why not."""
    cov = coverage(result)
    if cov.partial:
        return MARK_PARTIAL
    if not cov.whole_list or (reference is not None and cov.pairs_fingerprint != reference):
        return MARK_OTHER_PAIRS
    return ""


def row_labels(samples: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Row key -> a label: the method name, and for a method with several rows, the settings that differ.

    ``samples`` maps each row key to one of its results. Only settings whose values differ between the rows
    of one method are named, so a label stays short and still tells the rows apart.
    """
    by_method: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for key, result in samples.items():
        by_method[(result["method"]["name"], bool(result["method"].get("uses_ground_truth")))].append(key)
    labels: dict[str, str] = {}
    for (name, uses_truth), keys in by_method.items():
        base = name + (" (ground truth)" if uses_truth else "")
        settings = _distinguishing_settings([configuration(samples[k]) for k in keys])
        for key, shown in zip(keys, settings):
            labels[key] = f"{base} [{', '.join(shown)}]" if shown else base
        _disambiguate({k: labels[k] for k in keys}, labels)
    return labels


def _distinguishing_settings(configs: list[dict[str, Any]]) -> list[list[str]]:
    """For each configuration, 'key=value' for the settings that are not the same in all of them."""
    flat = [_flatten(c) for c in configs]
    keys = [k for k in dict.fromkeys(k for f in flat for k in f) if len({f.get(k) for f in flat}) > 1]
    # Weights records mostly follow the options (a `weights=` path, a seed for random init): name them only
    # where the other settings leave two rows alike (e.g. a checkpoint file replaced at the same path).
    weight_keys = {_weights_key(c) for c in configs}
    others = [k for k in keys if k not in weight_keys]
    if len({tuple(f.get(k) for k in others) for f in flat}) == len(flat):
        keys = others
    weights_names = _weights_texts([c["weights"] for c in configs])
    return [[f"{k}={weights_names[f[k]] if k == _weights_key(c) else _short(f.get(k))}" for k in keys]
            for f, c in zip(flat, configs)]


def _weights_key(config: dict[str, Any]) -> str:
    return "weights (loaded)" if "weights" in config["config"] else "weights"


def _flatten(config: dict[str, Any]) -> dict[str, str]:
    """Options under their own names (as --set writes them), run settings as their `run` flags; values as
    JSON text, so any two compare."""
    flat = {k: json.dumps(v, sort_keys=True) for k, v in config["config"].items()}
    flat[_weights_key(config)] = json.dumps(config["weights"], sort_keys=True)
    flat["--dtype"] = json.dumps(config["dtype"])
    flat["--seed"] = json.dumps(config["seed"])
    flat["class"] = json.dumps(config["class"])
    return flat


def _weights_texts(weights: list[Any]) -> dict[str, str]:
    """A short name for each distinct weights record: its file or source name, else its checksum."""
    distinct = {json.dumps(w, sort_keys=True): w for w in weights}

    def source(w: Any) -> str:
        return PurePath(str(w.get("source") or w.get("path") or "?")).name if isinstance(w, dict) else str(w)

    def checksum(w: Any) -> str:
        digest = w.get("sha256") if isinstance(w, dict) else None
        return (digest or json_identity_hash({"weights": w}))[:8]

    for namer in (source, checksum):
        names = {k: namer(w) for k, w in distinct.items()}
        if len(set(names.values())) == len(names):
            return names
    return {k: f"{source(w)}#{checksum(w)}" for k, w in distinct.items()}


def _short(text: str | None) -> str:
    """A JSON value as a label shows it: strings unquoted, long paths as their file name."""
    if text is None:
        return "unset"  # the option does not exist in this row's method class
    value = json.loads(text)
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) <= _SHORT_VALUE:
        return text
    if "/" in text:
        return PurePath(text).name[-_SHORT_VALUE:]
    return text[: _SHORT_VALUE - 1] + "…"


def _disambiguate(group: dict[str, str], labels: dict[str, str]) -> None:
    """Shortened values can coincide; then the configuration hash tells the rows apart."""
    counts = Counter(group.values())
    for key, label in group.items():
        if counts[label] > 1:
            labels[key] = f"{label} #{key[:6]}"
