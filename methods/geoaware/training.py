"""Training the GeoAware-SC family's adapter with corrbench's engine: GeoAware-SC's, DIY-SC's and Jamais Vu's recipes.

``GeoAwareTrainer(matcher)`` implements ``corrbench.train.api.Trainable`` for a ``GeoAwareMatcher`` (``diy-sc``,
``geoaware-sc-dino``, ``jamais-vu``); ``corrbench train --method diy-sc --benchmark spair71k-diy-sc`` etc. The frozen
feature sources (DINOv2 ViT-B/14) encode the engine's normalised training canvases without gradients; the adapter
(``AggregationNetwork``, with its ``logit_scale``) is what the optimiser updates, as the authors' ``pck_train.py``
(``AdamW(aggre_net.parameters() [+ corr_map_net, which has none])``). One step:

1. frozen features of the source and target canvases (and, with the recipe's ``flip_views``, of both mirrored
   canvases) in one batched call, then the adapter on all of them (one call of the bound student);
2. Geo-SC's loss (``corrbench.train.losses.geosc_batch_loss``: InfoNCE on the keypoint cells with the adapter's
   ``logit_scale``, the soft-argmax flow error at temperature 0.02, and the flip views' flow terms weighted 1 and
   0.25), the mean over the batch's pairs (their ``batch_loss /= BZ``);
3. objective ``jamais-vu`` adds, per pair, Jamais Vu's prototype losses of the SOURCE image (their
   ``calculate_3d_loss`` reads the first image only): ``prototypes.prototype_losses`` with the image's point map,
   depth and object mask read by ``point_maps.read_training_geometry`` from the folders named by the settings
   ``point_maps`` and ``object_masks``; the category prototypes are trained by the same optimiser
   (``chain(aggre_net.parameters(), category_prototype.parameters())``).

Presets (``--preset``; the first one of each member is its default), every value from the authors' configs:

``geoaware-sc``  Junyi42/GeoAware-SC ``configs/train_spair.yaml`` + ``pck_train.py`` defaults: AdamW, lr 1.25e-3,
                 weight decay 1e-3, batch 1 (``BZ``), 2 epochs, one-cycle schedule (``SCHEDULER: one_cycle``,
                 ``SCHEDULER_P1`` 0.3: torch's ``OneCycleLR``, which also cycles AdamW's beta1 0.95 -> 0.85),
                 840 px canvas (``ANNO_SIZE``), flip views on (``PAIR_AUGMENT: true``), feature dropout 0.2
                 (``FEAT_MAP_DROPOUT``), flow noise 0.1 (``GAUSSIAN_AUGMENT``), dense objective (``DENSE_OBJ: 1``,
                 ``SOFT_TRAIN_WINDOW`` 0).
``geoaware-sc-ap10k``  ``configs/train_ap10k.yaml``: the same with 1 epoch and no scheduler (constant lr).
``diy-sc``       odunkel/DIY-SC ``configs/train_spair.yaml`` + ``pck_train.py`` defaults, run with ``--ONLY_DINO``
                 for the released DINOv2 adapter: AdamW, lr 5e-3, weight decay 1e-3, batch 1, one-cycle (pct 0.3),
                 no flip views (``PAIR_AUGMENT: false``), feature dropout 0.2, trained on the pseudo-labels
                 (``TRAIN_DATASET: spair_pseudo_gt``: corrbench's ``spair71k-diy-sc`` benchmark). Their run stops
                 after ``MAX_STEPS`` = 200 001 pairs, inside the first epoch with 30 000 pairs per category, and
                 their one-cycle spans exactly those steps: the preset's one-cycle spans 200 001 steps
                 (``one_cycle_steps``) and ``--max-steps 200001`` stops the run where theirs stops.
``jamais-vu``    VICO-UoE/JamaisVu ``configs/train_spair.yaml`` with ``--CAT_PROTO`` (README, "Training"): the
                 ``geoaware-sc`` recipe plus the prototype losses (``objective=jamais-vu``); needs
                 ``--set point_maps=DIR --set object_masks=DIR`` (their ``SPair-71k/MoGeMaps`` and
                 ``SPair-71k/owlv2_sam_masks``; layout in ``point_maps``).

Differences from the authors' training, all recorded here:

- features: computed on the fly from the engine's canvases, not read from their precomputed files (the canvas
  is theirs: every preset names the engine's ``pad-centre`` rule, and ``auto_train_resize`` picks it for every
  dataset: the family's inference canvas ``family_canvas``, LANCZOS, centred, keypoints by their
  ``preprocess_kps_pad``; Jamais Vu's point maps are centre-padded like it, by ``prototype_losses``);
- flow noise (``flow_noise``, their ``GAUSSIAN_AUGMENT`` 0.1): drawn from the trainer's generator (theirs from
  torch's global stream); the box side is the dataset's box scaled per axis to the canvas (theirs one scale);
- initialisation: a run starts from a fresh adapter drawn from the run's ``--seed`` (``checkpoint=random``, their
  ``LOAD`` unset). Their SPair configs name ``LOAD: ./results_ap10k/pretrained_ckpt/last.PTH`` (an AP-10K
  pre-trained SD+DINOv2 adapter shipped in their repository); ``--set checkpoint=PATH`` starts from such a file
  (with ``sources=sd,dino``, which this trainer cannot train yet: see the next point);
- sources: only DINOv2 is encoded from the engine's canvases (``DINOv2Source.encode_canvases``); the SD+DINOv2
  adapters (``geoaware-sc``, ``jamais-vu``'s default ``sources=sd,dino``) are refused with a one-line error naming
  ``--set sources=dino``;
- schedule length: their one-cycle spans ``53339 // BZ`` steps per epoch (SPair-71k's training pairs, hard-coded;
  Jamais Vu ``(53339 + BZ) // BZ``); here the run's own steps (``epochs x`` steps per epoch; on SPair-71k with
  batch 1 that is its usable training pairs per epoch);
- validation and selection: the engine validates after every epoch on ``val`` and keeps the best PCK@0.1 (theirs
  every ``EVAL_EPOCH`` pairs on a val sample; DIY-SC by the val loss on pseudo-labels);
- Jamais Vu's prototype losses take the source keypoints visible in both images (the pair's rows), theirs every
  keypoint of the source image's pair annotation;
- the trainer runs in one process (the authors train on one GPU with batch 1).

Checkpoints: the adapter's state dict at the top level of the file (``aggre_net.state_dict()``, ``logit_scale`` and
``self_logit_scale`` included), as their ``torch.save(aggre_net.state_dict(), 'best.pth')``: their
``load_pretrained_weights(torch.load(path))`` loads it as is (it skips the engine's resume keys), and so does
``--set checkpoint=PATH`` of every member. Jamais Vu's prototypes are under ``category_prototype`` (their
``best_cp.pth``: ``torch.save(ckpt["category_prototype"], "best_cp.pth")`` gives their file).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from corrbench.errors import ConfigError
from corrbench.runtime import StageTimer
from corrbench.train.api import StepOutput, TrainerBase, TrainingPlan, TrainingRecipe
from corrbench.train.checkpoints import cpu_state_dict
from corrbench.train.data import TrainingBatch
from corrbench.train.losses import GEOSC_TEMPERATURE, geosc_batch_loss

from .adapter import load_adapter_state
from .features import FAMILY_RESOLUTION
from .matcher import normalize_descriptors
from .point_maps import read_training_geometry
from .prototypes import (LOGGED_POINTS, NEIGHBOURHOOD_SIZE, SAMPLED_OBJECT_POINTS, SPAIR_KEYPOINTS_PER_CATEGORY,
                         SPAIR_PROTOTYPE_CATEGORIES, CategoryPrototype, prototype_losses)
from .weights import PROTOTYPE_KEY, adapter_state

OBJECTIVES = ("geosc", "jamais-vu")
LR_SCHEDULES = ("constant", "one-cycle")


def _synthetic_table() -> tuple[tuple[str, ...], tuple[int, ...]]:
    from corrbench.datasets.synthetic.layout import CATEGORIES, category_keypoints

    return CATEGORIES, tuple(len(category_keypoints(c)[0]) for c in CATEGORIES)


#: Categories and keypoints per category of the prototypes (``prototype_table``); a keypoint id is its slot.
PROTOTYPE_TABLES = {
    "spair": lambda: (SPAIR_PROTOTYPE_CATEGORIES, SPAIR_KEYPOINTS_PER_CATEGORY),
    "synthetic": _synthetic_table,
}


@dataclasses.dataclass(frozen=True)
class GeoAwareTrainingSettings:
    """The family's own training settings (the engine's ``TrainingRecipe.method``; ``--set`` keys)."""

    objective: str = "geosc"  # geosc: Geo-SC's InfoNCE + l2 | jamais-vu: + the category-prototype losses
    # soft-argmax temperature of the flow term (named apart from the matcher's inference ``temperature`` option)
    loss_temperature: float = GEOSC_TEMPERATURE
    feature_dropout: float = 0.2  # FEAT_MAP_DROPOUT: dropout on the frozen input maps while training
    flow_noise: float = 0.1  # GAUSSIAN_AUGMENT: flow-noise std as a fraction of half the target's box side
    lr_schedule: str = "constant"  # constant | one-cycle (torch's OneCycleLR over the run's steps)
    one_cycle_rise: float = 0.3  # SCHEDULER_P1: the fraction of the steps the one-cycle lr rises (pct_start)
    one_cycle_steps: int = 0  # the one-cycle's length; 0: the run's steps (epochs x steps per epoch)
    point_maps: str | None = None  # jamais-vu: <root>/<category>/<image stem>/points.exr|npy, depth.exr|npy
    object_masks: str | None = None  # jamais-vu: <root>/<category>/<image stem>.npy
    prototype_table: str = "spair"  # the prototypes' categories and keypoint counts (PROTOTYPE_TABLES)
    prototype_logged_points: int = LOGGED_POINTS  # their visualisation-only points per category (no gradient)
    prototype_sampled_points: int = SAMPLED_OBJECT_POINTS  # the paper's k = 1024 farthest object points per image

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective: use one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not self.loss_temperature > 0 or not 0 <= self.feature_dropout < 1 or self.flow_noise < 0:
            raise ConfigError(f"loss_temperature must be > 0, feature_dropout in [0, 1) and flow_noise >= 0, got "
                              f"{self.loss_temperature}, {self.feature_dropout}, {self.flow_noise}")
        if self.lr_schedule not in LR_SCHEDULES or not 0 < self.one_cycle_rise < 1:
            raise ConfigError(f"lr_schedule: use one of {', '.join(LR_SCHEDULES)} with one_cycle_rise in (0, 1), "
                              f"got {self.lr_schedule!r}, {self.one_cycle_rise}")
        if self.one_cycle_steps < 0:
            raise ConfigError(f"one_cycle_steps must be >= 0 (0: the run's steps), got {self.one_cycle_steps}")
        if self.prototype_table not in PROTOTYPE_TABLES:
            raise ConfigError(f"prototype_table: use one of {', '.join(PROTOTYPE_TABLES)}, "
                              f"got {self.prototype_table!r}")
        if self.prototype_logged_points < 1 or self.prototype_sampled_points <= NEIGHBOURHOOD_SIZE:
            raise ConfigError(f"prototype_logged_points must be >= 1 and prototype_sampled_points > "
                              f"{NEIGHBOURHOOD_SIZE} (the neighbourhoods' size), got {self.prototype_logged_points}, "
                              f"{self.prototype_sampled_points}")


_GEOSC = GeoAwareTrainingSettings(lr_schedule="one-cycle")
GEOAWARE_SC_RECIPE = TrainingRecipe(
    optimizer="adamw", lr=1.25e-3, weight_decay=1e-3, batch_size=1, epochs=2, train_resolution=FAMILY_RESOLUTION,
    train_resize="pad-centre", flip_views=True, method=_GEOSC,
)
GEOAWARE_SC_AP10K_RECIPE = dataclasses.replace(GEOAWARE_SC_RECIPE, epochs=1,
                                               method=dataclasses.replace(_GEOSC, lr_schedule="constant"))
#: Their one-cycle spans MAX_STEPS = 200 001 pairs (batch 1), where their run stops.
DIY_SC_MAX_STEPS = 200_001
DIY_SC_RECIPE = dataclasses.replace(GEOAWARE_SC_RECIPE, lr=5e-3, epochs=1, flip_views=False,
                                    method=dataclasses.replace(_GEOSC, one_cycle_steps=DIY_SC_MAX_STEPS))
#: The point-map and mask folders are the user's (``--set``); the preset fixes everything else.
JAMAIS_VU_RECIPE = dataclasses.replace(GEOAWARE_SC_RECIPE, method=dataclasses.replace(_GEOSC, objective="jamais-vu"))

PRESETS: dict[str, TrainingRecipe] = {
    "geoaware-sc": GEOAWARE_SC_RECIPE,
    "geoaware-sc-ap10k": GEOAWARE_SC_AP10K_RECIPE,
    "diy-sc": DIY_SC_RECIPE,
    "jamais-vu": JAMAIS_VU_RECIPE,
}


def _first(name: str) -> dict[str, TrainingRecipe]:
    return {name: PRESETS[name], **{k: v for k, v in PRESETS.items() if k != name}}


class GeoAwareTrainer(TrainerBase):
    """Trains the adapter of a ``GeoAwareMatcher`` (see the module docstring); GeoAware-SC's recipe first."""

    DEFAULT_PRESET = "geoaware-sc"

    @staticmethod
    def training_method_defaults(seed: int) -> dict[str, str]:
        """A fresh adapter drawn from the run's seed (their ``LOAD`` unset), not the member's released file."""
        return {"checkpoint": "random", "seed": str(seed)}

    @classmethod
    def training_presets(cls) -> Mapping[str, TrainingRecipe]:
        return _first(cls.DEFAULT_PRESET)

    @staticmethod
    def uses_flip_views(recipe: TrainingRecipe) -> bool:
        return True  # Geo-SC's loss reads them whenever the recipe has them (every objective builds on it)

    @staticmethod
    def auto_train_resize(dataset: str) -> str:
        """``pad-centre`` for every dataset: the authors' canvas, the one ``family_canvas`` draws at inference."""
        return "pad-centre"

    def __init__(self, matcher: nn.Module):
        if not isinstance(getattr(matcher, "adapter", None), nn.Module) or not hasattr(matcher, "sources"):
            raise ConfigError(f"GeoAwareTrainer needs a GeoAwareMatcher, got {type(matcher).__name__}")
        self.matcher, self.adapter, self.sources = matcher, matcher.adapter, matcher.sources
        self.settings = GeoAwareTrainingSettings()
        self.prototype: CategoryPrototype | None = None
        self.generator = torch.Generator()  # the flow noise and the prototype losses' first farthest points

    def configure_training(self, recipe: TrainingRecipe, plan: TrainingPlan) -> None:
        self.settings = settings = recipe.method if recipe.method is not None else GeoAwareTrainingSettings()
        if plan.world_size > 1:
            raise ConfigError("the GeoAware-SC family trains in one process (the authors: one GPU, batch 1)",
                              hint="run corrbench train without torchrun")
        unable = [getattr(s, "name", type(s).__name__) for s in self.sources if not hasattr(s, "encode_canvases")]
        if unable:
            raise ConfigError(f"feature sources {unable} cannot encode the engine's training canvases",
                              hint="train a DINOv2-only adapter: --set sources=dino")
        if settings.objective == "jamais-vu" and not (settings.point_maps and settings.object_masks):
            raise ConfigError("objective jamais-vu needs the folders of the point maps and the object masks",
                              hint="--set point_maps=DIR --set object_masks=DIR (e.g. SPair-71k/MoGeMaps and "
                              "SPair-71k/owlv2_sam_masks; layout in methods/geoaware/point_maps.py)")
        if settings.objective == "jamais-vu" and recipe.train_resize not in ("auto", "pad-centre"):
            raise ConfigError("objective jamais-vu needs the centred canvas: the point maps are padded as it is",
                              hint=f"drop --set train_resize={recipe.train_resize}")
        self.adapter.requires_grad_(True)
        self.adapter.feature_dropout = settings.feature_dropout
        self.prototype = None
        if settings.objective == "jamais-vu":
            categories, counts = PROTOTYPE_TABLES[settings.prototype_table]()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(plan.seed)
                self.prototype = CategoryPrototype(self.adapter.projection_dim, categories, counts,
                                                   logged_points=settings.prototype_logged_points,
                                                   sampled_points=settings.prototype_sampled_points)
            self.prototype.to(plan.device)
        self.generator = torch.Generator().manual_seed(plan.seed)
        self.total_steps = plan.total_steps

    def trainable_parameters(self) -> list[nn.Parameter]:
        extra = list(self.prototype.parameters()) if self.prototype is not None else []
        return [*self.adapter.parameters(), *extra]

    def student(self) -> nn.Module:
        return self.adapter

    def lr_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        """Their ``OneCycleLR(max_lr=LR, pct_start=SCHEDULER_P1)`` over the run's steps, or None (constant)."""
        settings = self.settings
        if settings.lr_schedule == "constant":
            return None
        return HeldOneCycleLR(optimizer, max_lr=optimizer.param_groups[0]["lr"],
                              total_steps=settings.one_cycle_steps or self.total_steps,
                              pct_start=settings.one_cycle_rise)

    # -- one step ----------------------------------------------------------------------------------------------
    def training_step(self, batch: TrainingBatch, step: int, epoch: int) -> StepOutput:
        timer = StageTimer(batch.images.device)
        b = batch.size
        canvases = batch.images.flatten(0, 1)
        if batch.flip is not None:
            canvases = torch.cat([canvases, batch.flip.images.flatten(0, 1)])
        with timer("frozen_features"), torch.no_grad():
            frozen = torch.cat([source.encode_canvases(canvases).float() for source in self.sources], dim=1)
        with timer("student_forward"):
            maps = self.student_forward(frozen)
            features = maps[: 2 * b].unflatten(0, (b, 2))
            flipped = maps[2 * b :].unflatten(0, (b, 2)) if batch.flip is not None else None
        with timer("losses"):
            loss, losses = geosc_batch_loss(features, flipped, batch, self.adapter.logit_scale,
                                            temperature=self.settings.loss_temperature,
                                            flow_noise=self.settings.flow_noise, generator=self.generator)
        if self.prototype is not None:
            with timer("prototype_losses"):
                prototype, terms = self._prototype_losses(features[:, 0], batch)
            loss = loss + prototype
            losses = {**losses, **terms}
        return StepOutput(loss=loss, losses={k: v.detach() for k, v in losses.items()},
                          diagnostics={"logit_scale": float(self.adapter.logit_scale.detach())},
                          seconds=dict(timer.seconds))

    def _prototype_losses(self, source_maps: torch.Tensor,
                          batch: TrainingBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean over the batch of Jamais Vu's losses of each pair's source image (module docstring, step 3)."""
        assert self.prototype is not None
        canvas = batch.canvas_size[0]
        settings, slots = self.settings, self.prototype.kps.shape[1]
        totals, terms = [], {"keypoint_alignment": [], "keypoint_features": [], "object_to_prototype": [],
                             "prototype_to_object": []}
        for i in range(batch.size):
            category, image = batch.categories[i], Path(batch.image_paths[i][0])
            if not batch.kp_ids or len(batch.kp_ids[i]) != int(batch.num_points[i]):
                raise ConfigError(f"objective jamais-vu: pair {batch.pair_ids[i]} has no keypoint ids",
                                  hint="the prototype losses need a dataset whose pairs name their keypoints")
            keypoints = source_maps.new_zeros(slots, 2)
            visible = torch.zeros(slots, dtype=torch.bool, device=source_maps.device)
            slot = torch.tensor(_keypoint_slots(batch.kp_ids[i], batch.pair_ids[i]), device=source_maps.device)
            keypoints[slot] = batch.keypoints[i, 0, : len(slot)].to(keypoints.dtype)
            visible[slot] = True
            geometry = read_training_geometry(settings.point_maps, settings.object_masks, category, image.stem)
            # at the image's resolution: prototype_losses centre-pads them, as the pad-centre canvas the image
            points, depth, mask = (t.to(source_maps.device) for t in (geometry.points, geometry.depth,
                                                                      geometry.object_mask))
            result = prototype_losses(self.prototype, category, keypoints, visible,
                                      normalize_descriptors(source_maps[i], dim=0), points, depth, mask,
                                      annotation_size=canvas, generator=self.generator)
            totals.append(result.total)
            for name in terms:
                terms[name].append(getattr(result, name))
        mean = {name: torch.stack(values).mean() for name, values in terms.items()}
        return torch.stack(totals).mean(), mean

    # -- checkpoints -------------------------------------------------------------------------------------------
    def release_state(self) -> dict[str, Any]:
        """The adapter's state dict at the top level (their ``best.pth``) + ``category_prototype`` (Jamais Vu)."""
        state: dict[str, Any] = cpu_state_dict(self.adapter.state_dict())
        if self.prototype is not None:
            state[PROTOTYPE_KEY] = cpu_state_dict(self.prototype.state_dict())
        return state

    def load_release_state(self, state: Mapping[str, Any]) -> None:
        load_adapter_state(self.adapter, adapter_state(state, "the checkpoint"), "the checkpoint")
        if self.prototype is not None:
            if PROTOTYPE_KEY not in state:
                raise ConfigError(f"the checkpoint has no {PROTOTYPE_KEY!r}: it was not trained with objective "
                                  "jamais-vu", hint="resume a run of the same objective")
            self.prototype.load_state_dict(state[PROTOTYPE_KEY])

    def extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])


class DIYSCTrainer(GeoAwareTrainer):
    """``diy-sc``'s trainer: DIY-SC's recipe first."""

    DEFAULT_PRESET = "diy-sc"


class JamaisVuTrainer(GeoAwareTrainer):
    """``jamais-vu``'s trainer: Jamais Vu's recipe first."""

    DEFAULT_PRESET = "jamais-vu"


def _keypoint_slots(kp_ids: Sequence[str], pair_id: str) -> list[int]:
    """A prototype's keypoint slot is the keypoint's id (SPair-71k's and the synthetic benchmark's are numbers)."""
    try:
        return [int(k) for k in kp_ids]
    except ValueError:
        raise ConfigError(f"objective jamais-vu: pair {pair_id} names its keypoints {list(kp_ids)[:3]}, not slot "
                          "numbers", hint="the prototypes know SPair-layout datasets (prototype_table spair or "
                          "synthetic)") from None


class HeldOneCycleLR(torch.optim.lr_scheduler.OneCycleLR):
    """torch's ``OneCycleLR`` (the authors' scheduler), holding its last learning rate once its ``total_steps`` are
    done instead of raising: a run longer than ``one_cycle_steps`` (DIY-SC's stops at ``MAX_STEPS``) goes on."""

    def step(self, epoch: int | None = None) -> None:
        if self.last_epoch < self.total_steps:
            super().step(epoch)


