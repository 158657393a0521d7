"""Named protocols: each reference codebase's scoring conventions as one preset over any benchmark.

``corrbench run --benchmark B --protocol NAME`` scores B the way codebase NAME does. A preset overrides fields
of the benchmark's ``Protocol`` (and, where a dataset adapter takes the option, its ``adapter_options``); the
pairs stay B's. The result is the benchmark ``B-NAME`` (its own runs, never resumed from or mixed with B's),
with ``protocol.name = NAME`` recorded in every result. ``corrbench`` (the default) changes nothing.

``corrbench``
    corrbench's own convention: original image frame, ``<=``, float64, PCK-dagger among the keypoints
    visible in the target.
``marco`` (visinf/MARCO)
    SPair-71k, SPair-U and MP-100 measured in the 770 px stretched square of MARCO's released configs
    (``frame="square:770"``: keypoints and boxes scaled per axis, ground truth clamped). PF-PASCAL and AP-10K
    keep the original frame: MARCO scales them uniformly, which equals it up to the rounding of the short
    side. Everything else is corrbench's (MARCO also uses ``<=``, per-image PCK pooled over pairs). Its
    MP-100 animal-body numbers cannot be reproduced by any preset: MARCO's loader pairs the wrong keypoint
    rows there (``corrbench.datasets.mp100.adapter``).
``geoaware`` (Junyi42/GeoAware-SC; VICO-UoE/JamaisVu, which shares its evaluation)
    ``pck_train.py``'s ``compute_pck``: keypoints in the 840 px letterbox frame (``letterbox:840``, longest
    side scaled to 840, centred padding; box thresholds = original box side x scale, image threshold = 840),
    strict ``<``, float32 alphas and distances (``arithmetic="torch-float32"``; see ``corrbench.metrics``:
    a distance exactly at alpha x T is correct at 0.05/0.1/0.15 and wrong at 0.01 with a box threshold),
    and Jamais Vu's PCK-dagger (``--PCKD``), where only keypoints visible in both images compete. Both
    report per-image PCK, category values weighted by their number of pairs, i.e. pooled over all pairs,
    which is corrbench's default too. Not reproduced, by design: GeoAware-SC's default ``--TEST_SAMPLE 20``
    (20 random pairs per category; their eval configs set 0, all pairs); NaN for a pair without a mutually
    visible keypoint (corrbench skips and counts it); their float32 averaging of per-image values (a float32
    rounding: 3e-6 percentage points on the golden data); Jamais Vu's dagger ties (``argmin`` picks the
    lowest index, corrbench lets the query win; ``torch.cdist`` in float32 decides near-ties). On AP-10K their loader
    multiplies each keypoint by ``v / 2`` (``preprocess_kps_pad``: ``kps *= kps[:, 2:3]``), which halves the
    coordinates of ``v = 1`` keypoints in their frame, source queries and ground truth alike: their AP-10K
    numbers score those keypoints against the wrong place, which corrbench does not reproduce; and they read
    the box side ``w`` where corrbench's box ``[x, y, x + w, y + h]`` gives ``(x + w) - x`` (equal up to one
    rounding, so only an exact tie can differ).
    Checked by running their code on the same files and predictions: ``tests/data/geoaware_*_golden.json``.
``unified`` (Visual-AI/Semantic-Correspondence, the unified benchmark)
    ``test.py --resolution 840``: both images stretched to 840 x 840 with align-corner scaling
    (``square-align-corners:840``: ``x / (W-1) * 839``, ground truth clamped to ``[1e-4, 839 - 1e-4]``,
    box threshold from the scaled box, image threshold 840), PF-PASCAL and PF-WILLOW keypoints floored
    (``floor_keypoints``), AP-10K keypoints visible only when ``v == 2``. Its keypoints are float32 tensors and
    it compares ``<=`` against ``alpha * T`` rounded to float32; corrbench keeps float64 there, which can
    differ only for a distance within float32 rounding of alpha x T.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from .errors import ConfigError, UnknownNameError
from .protocol import DEFAULT_PROTOCOL_NAME, BenchmarkSpec
from .registry import did_you_mean


@dataclass(frozen=True)
class ProtocolPreset:
    """A named protocol.

    name, description: as ``corrbench ls protocols`` and table headers show them (one line).
    protocol: ``Protocol`` fields set on every benchmark.
    frames: ``Protocol.frame`` per dataset adapter, for codebases whose frame depends on the dataset.
    adapter_options: adapter settings, applied only to benchmarks whose ``adapter_options`` already name them
        (``floor_keypoints`` exists for PF-PASCAL/PF-WILLOW, ``visibility`` for AP-10K).
    """

    name: str
    description: str
    protocol: Mapping[str, Any] = field(default_factory=dict)
    frames: Mapping[str, str] = field(default_factory=dict)
    adapter_options: Mapping[str, Any] = field(default_factory=dict)

    def overrides(self, spec: BenchmarkSpec) -> dict[str, Any]:
        """What this preset changes in ``spec``: ``{"protocol.FIELD" | "adapter_options.KEY": new value}``."""
        changes: dict[str, Any] = {}
        fields = dict(self.protocol)
        if spec.dataset in self.frames:
            fields["frame"] = self.frames[spec.dataset]
        for key, value in fields.items():
            if getattr(spec.protocol, key) != value:
                changes[f"protocol.{key}"] = value
        for key, value in self.adapter_options.items():
            if key in spec.adapter_options and spec.adapter_options[key] != value:
                changes[f"adapter_options.{key}"] = value
        return changes

    def apply(self, spec: BenchmarkSpec) -> BenchmarkSpec:
        """``spec`` under this protocol, named ``<spec>-<preset>`` (``spec`` itself for the default)."""
        if spec.protocol.name == self.name:
            return spec
        if spec.protocol.name != DEFAULT_PROTOCOL_NAME:
            raise ConfigError(
                f"benchmark {spec.name!r} is already scored under protocol {spec.protocol.name!r}",
                hint=f"use --benchmark {spec.base_name} --protocol {self.name}",
            )
        changes = self.overrides(spec)
        protocol = {k.split(".", 1)[1]: v for k, v in changes.items() if k.startswith("protocol.")}
        options = {k.split(".", 1)[1]: v for k, v in changes.items() if k.startswith("adapter_options.")}
        return replace(
            spec,
            name=f"{spec.name}-{self.name}",
            description=f"{spec.description}; {self.name} protocol",
            protocol=replace(spec.protocol, **protocol, name=self.name),
            adapter_options={**spec.adapter_options, **options},
        )


PRESETS: dict[str, ProtocolPreset] = {
    preset.name: preset
    for preset in (
        ProtocolPreset(
            DEFAULT_PROTOCOL_NAME,
            "corrbench's default: original image frame, <=, float64, PCK-dagger among target-visible keypoints",
        ),
        ProtocolPreset(
            "marco",
            "MARCO: SPair-71k, SPair-U, MP-100 measured in its 770 px stretched square (others unchanged)",
            frames={"spair": "square:770", "spair-u": "square:770", "mp100": "square:770"},
        ),
        ProtocolPreset(
            "geoaware",
            "GeoAware-SC / Jamais Vu: 840 px letterbox frame, strict <, float32 alphas and distances, "
            "PCK-dagger among mutually visible keypoints",
            protocol={"frame": "letterbox:840", "comparison": "<", "arithmetic": "torch-float32",
                      "dagger_candidates": "both-visible"},
        ),
        ProtocolPreset(
            "unified",
            "unified benchmark: 840 px square with align-corner scaling, PF keypoints floored, AP-10K v == 2",
            protocol={"frame": "square-align-corners:840"},
            adapter_options={"floor_keypoints": True, "visibility": "v==2"},
        ),
    )
}


def get_preset(name: str) -> ProtocolPreset:
    """The preset called ``name``; an unknown name raises with did-you-mean suggestions."""
    try:
        return PRESETS[name]
    except KeyError:
        known = did_you_mean(name, PRESETS) or f"one of {', '.join(PRESETS)}"
        raise UnknownNameError(f"unknown protocol {name!r}",
                               hint=f"{known} (`corrbench ls protocols` says what each sets)") from None


def apply_protocol(spec: BenchmarkSpec, name: str | None) -> BenchmarkSpec:
    """``spec`` under the named protocol; ``None`` keeps the benchmark as registered."""
    return spec if name is None else get_preset(name).apply(spec)


def recorded_protocol(benchmark: Mapping[str, Any]) -> tuple[str, str]:
    """``(base benchmark, protocol name)`` of a result's ``benchmark`` record.

    Results written before named protocols existed carry neither field: they were scored under the
    benchmark's own protocol, ``corrbench`` unless the benchmark is a ``*-marco`` variant.
    """
    name = str(benchmark.get("name", ""))
    protocol = benchmark.get("protocol", {}).get("name")
    if protocol is None:
        protocol = "marco" if name.endswith("-marco") else DEFAULT_PROTOCOL_NAME
    base = benchmark.get("base") or (name if protocol == DEFAULT_PROTOCOL_NAME else name.removesuffix(f"-{protocol}"))
    return base, protocol
