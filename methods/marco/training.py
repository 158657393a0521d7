"""Training MARCO with corrbench's engine: the step of the authors' ``engine.py`` and the two recipes.

``MARCOTrainer(matcher)`` implements ``corrbench.train.api.Trainable`` for a ``MARCOMatcher``; the engine
(``corrbench train --method marco --benchmark spair71k``) owns the loop, the data, the optimiser, clipping,
checkpoints, validation and devices. One step, in the order of ``engine.py``'s ``train_one_epoch``:

1. student forward: upsampled feature maps of the source and target canvases (one batched call through
   the bound, possibly DDP-wrapped, student);
2. teacher forward (no gradients): the EMA teacher's maps of the same canvases;
3. mining: ``flow_anchoring.mine_matches`` per pair (masks and GT keypoints of the batch), drawing the 300
   samples from this trainer's own generator (the authors draw them from numpy's global stream);
4. supervised loss: ``CoarseToFineLoss`` (sigma for the step from ``schedules``), summed over the batch's
   keypoints and divided by their number;
5. dense loss: per mined pair, the student's similarity maps at the mined source pixels and
   ``flow_anchoring_loss`` summed, divided by the number of mined points in the batch; weight 1;
   ``loss = gaussian_ce + flow_l2``;
6. (engine) backward, clipping at 0.1, optimiser step; then ``on_optimizer_step``: the EMA teacher update
   with the momentum of the step just taken.

Presets (``--preset``):

``released``  ``configs/train/train.yaml``: AdamW, lr 1e-4, weight decay 0, batch 12, 8 epochs, clip 0.1,
              canvas 630, sigma 3.5 held 1k steps then cosine to 1.0 at 12k, EMA momentum 0.99 -> 0.9995
              (cosine over 90% of the first 5 epochs), flow anchoring with k = 7, 300 samples, weight 1.
``paper``     Sec. 4 of the paper: Adam, lr 1e-4, batch 16, 10 epochs, sigma 3 -> 1 (cosine over the whole
              training), constant EMA momentum 0.999. The paper is silent on clipping, canvas, weight decay
              and the flow settings: the released values are kept.

Ablation presets (paper Tab. 4 and Tab. 8), each the ``released`` recipe with exactly the named settings
changed (so they appear in the run's recorded ``recipe.method`` and identity):

``marco-sup``           ``self_distillation=false``: no EMA teacher, no mining, no dense loss (Tab. 4 "Ours w/o
                        dense loss", Tab. 8 row 3).
``sigma-fixed-1``       ``sigma_schedule=fixed-1``: constant sigma 1 cell (Tab. 4 "Fixed sigma = 1").
``sigma-fixed-3``       ``sigma_schedule=fixed-3`` (Tab. 4 "Fixed sigma = 3").
``flow-raw``            ``flow_pseudo_labels=nearest`` (+ both flow switches off): the pseudo-labels are the raw
                        semantic flow, every masked source cell with its nearest masked target cell on the
                        teacher's features, no mutual check, no Delaunay, no clustering / anchoring (Tab. 4
                        "+ Raw flow"; see ``flow_anchoring``'s "Ablation variants").
``flow-mnn-only``       ``flow_pseudo_labels=mutual`` (+ both flow switches off): only the mutual nearest
                        neighbours inside the masks (Tab. 4 "+ MNN matches").
``flow-no-gt-anchors``  ``flow_keypoint_seeds=false, flow_anchor_clusters=false``: Delaunay flow from the mutual
                        matches alone, every flow pixel landing in the target mask is a candidate; no GT seeds,
                        no GT-anchored cluster filtering (Tab. 4 "+ Delaunay & warp").
``geosc-objective``     ``objective=geosc, self_distillation=false, flip_views=true``: the same architecture trained
                        with Geo-SC's InfoNCE + l2 (``corrbench.train.losses.geosc_loss``) instead of the
                        coarse-to-fine CE, with Geo-SC's pose-aware flip augmentation, no dense loss (Tab. 8 row 2).
                        ``--set self_distillation=true`` adds the flow loss on top; ``--set flip_views=false`` drops
                        the flip views. Adding the flip views changed this preset's recipe and so its run identity
                        (runs trained before it are in other run directories and do not resume into it).

Geo-SC objective, what fits and what does not: the keypoints (clamped into the canvas) go to cells with the
``x * w / W`` rule on MARCO's upsampled grid; the log scale is a trainer-owned parameter initialised at
``log(1 / 0.07)`` (optimised with the rest, saved in the trainer's resume state, not in the released model
layout; its gradient is averaged over processes by a hook); temperature ``geosc_temperature`` (0.02). With the
recipe's ``flip_views`` (on in the preset) the student also sees both images mirrored, and each pair's loss is
Geo-SC's weighted mean of its InfoNCE + l2 and the flow error of the two flip views (mirrored pair, weight 1;
mirrored source against the source, 0.25; ``corrbench.train.data`` "flip views"): the student's one batched
forward then takes four canvases per pair instead of two. Not used (the paper does not state it for Tab. 8):
Geo-SC's Gaussian noise on the target flow (std from the bbox; ``geosc_batch_loss``'s ``flow_noise``, which the
GeoAware-SC family's trainer turns on); the released recipe's optimiser, lr, clipping and canvas are kept, which
Geo-SC does not use.

Training canvas (``train_resize="auto"`` in every preset; ``auto_train_resize``): PF-PASCAL and AP-10K are
padded (longest side to the canvas, zeros at the bottom and right), every other dataset is stretched, as the
authors' loaders do: ``datasets/dataset.py`` resizes the longest side and pads (``data_utils.resize_longest_side``
+ ``pad_tensor_no_resize``) unless a subclass passes ``use_original_imsize=False``, which ``spair.py`` and
``spair_u.py`` do; ``mp100.py`` stretches with its own ``Resize((S, S))``; ``pfpascal.py`` and ``ap10k.py`` pad.
corrbench's synthetic benchmark (SPair-71k's layout) is stretched. The rules themselves are corrbench's
(``corrbench.train.data``).

Method settings (``--set``; ``MARCOTrainingSettings``): ``self_distillation`` (false: the ``marco-sup``
ablation, no teacher, no mining), ``sigma_schedule`` (``released``, ``paper``, ``fixed-<s>``), ``ema_start``,
``ema_end``, ``ema_epochs``, ``ema_ramp``, ``flow_samples``, ``flow_weight``, ``flow_k``, ``objective``
(``marco``, ``geosc``), ``geosc_temperature``, ``flow_pseudo_labels`` (``flow``, ``mutual``, ``nearest``),
``flow_keypoint_seeds``, ``flow_anchor_clusters``.

Initialisation: a run starts from zero adapters and a head drawn from the run's ``--seed``
(``training_method_defaults``: ``checkpoint=random``), as the authors' ``train.py`` without ``--checkpoint``; the
backbone comes from ``weights`` (the official DINOv2 ViT-L/14-reg by default). ``--set checkpoint=PATH``
fine-tunes from a MARCO checkpoint instead.

Differences from the authors' training, all deliberate:

- multi-GPU normalisation: the authors divide each process's losses by that process's keypoint and mined
  counts and let DDP average the gradients; here the counts are summed over processes first, so a
  multi-GPU step computes exactly the single-GPU gradient (one process: identical to the authors');
- validation: the authors validate on the TEST split after every epoch; corrbench uses ``val`` and keeps
  the best checkpoint by PCK@0.1;
- the authors' teacher starts as a full second model; here ``EMATeacher`` shares the frozen backbone.

Checkpoints: ``{"model": adapters + head, "ema": teacher}`` plus the engine's resume keys, i.e.
``methods/marco/checkpoint.py``'s layout, which the authors' ``hubconf`` / ``evaluate.py`` load as is.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch
from torch import nn

from corrbench.errors import ConfigError
from corrbench.runtime import StageTimer
from corrbench.train.api import StepOutput, TrainerBase, TrainingPlan, TrainingRecipe
from corrbench.train.checkpoints import cpu_state_dict
from corrbench.train.data import TrainingBatch
from corrbench.train.losses import GEOSC_LOGIT_SCALE_INIT, GEOSC_TEMPERATURE, geosc_batch_loss

from .checkpoint import check_state, model_state
from .ema import EMATeacher
from .flow_anchoring import FlowAnchoringConfig, flow_anchoring_loss, mine_matches, mined_similarity_maps
from .losses import MARCO_TEMPERATURE, CoarseToFineLoss
from .matcher import similarity_at_points
from .schedules import MomentumSchedule, sigma_schedule

#: The supervised objective on the GT keypoints (``MARCOTrainingSettings.objective``).
OBJECTIVES = ("marco", "geosc")
#: Datasets (``BenchmarkSpec.dataset`` keys) the authors train with longest side + padding; the rest stretch
#: (module docstring, "Training canvas").
PAD_DATASETS = frozenset({"pf-pascal", "ap10k"})


@dataclasses.dataclass(frozen=True)
class MARCOTrainingSettings:
    """MARCO's own training settings (the engine's ``TrainingRecipe.method``)."""

    self_distillation: bool = True
    sigma_schedule: str = "released"  # released | paper | fixed-<sigma> (the matcher's ``sigma`` is inference's)
    ema_start: float = 0.99
    ema_end: float = 0.9995
    ema_epochs: float = 5.0  # the ramp spans ema_ramp of this many epochs' steps
    ema_ramp: float = 0.9
    flow_samples: int = 300
    flow_weight: float = 1.0
    flow_k: int = 7
    # Ablations (paper Tab. 4 and 8; the module docstring's "Ablation presets"):
    objective: str = "marco"  # marco: coarse-to-fine CE | geosc: Geo-SC's InfoNCE + l2 (train.losses.geosc_loss)
    geosc_temperature: float = GEOSC_TEMPERATURE  # soft-argmax temperature of Geo-SC's l2 term
    flow_pseudo_labels: str = "flow"  # FlowAnchoringConfig.pseudo_labels: flow | mutual | nearest
    flow_keypoint_seeds: bool = True  # FlowAnchoringConfig.keypoint_seeds
    flow_anchor_clusters: bool = True  # FlowAnchoringConfig.anchor_clusters

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"MARCOTrainingSettings.objective: use one of {OBJECTIVES}, got {self.objective!r}")
        if not self.geosc_temperature > 0:
            raise ConfigError(f"geosc_temperature must be > 0, got {self.geosc_temperature}")
        try:
            self.flow_config()
        except ValueError as exc:
            raise ConfigError(f"MARCO flow settings: {exc}") from None
        sigma_schedule(self.sigma_schedule, total_steps=1)  # validates the name
        MomentumSchedule(self.ema_start, self.ema_end)
        if self.ema_epochs < 0 or not 0 <= self.ema_ramp <= 1:
            raise ConfigError(f"ema_epochs must be >= 0 and ema_ramp in [0, 1], got {self.ema_epochs}, {self.ema_ramp}")
        if self.flow_samples < 1 or self.flow_weight < 0 or self.flow_k < 2:
            raise ConfigError("flow_samples >= 1, flow_weight >= 0 and flow_k >= 2 are required")

    def momentum_schedule(self, steps_per_epoch: int) -> MomentumSchedule:
        """The released ramp length ``int(ema_epochs * steps_per_epoch * ema_ramp)`` (``engine.py``)."""
        return MomentumSchedule(self.ema_start, self.ema_end, int(self.ema_epochs * steps_per_epoch * self.ema_ramp))

    def flow_config(self) -> FlowAnchoringConfig:
        return FlowAnchoringConfig(
            num_samples=self.flow_samples, k_init=self.flow_k, pseudo_labels=self.flow_pseudo_labels,
            keypoint_seeds=self.flow_keypoint_seeds, anchor_clusters=self.flow_anchor_clusters,
        )


RELEASED_RECIPE = TrainingRecipe(
    optimizer="adamw", lr=1e-4, weight_decay=0.0, batch_size=12, epochs=8, clip_grad_norm=0.1,
    train_resolution=630, train_resize="auto", masks="auto", method=MARCOTrainingSettings(),
)
PAPER_RECIPE = dataclasses.replace(
    RELEASED_RECIPE, optimizer="adam", batch_size=16, epochs=10,
    method=MARCOTrainingSettings(sigma_schedule="paper", ema_start=0.999, ema_end=0.999),
)


def _ablation(**changes: Any) -> TrainingRecipe:
    """The released recipe with the named change of its method settings."""
    return dataclasses.replace(RELEASED_RECIPE, method=dataclasses.replace(RELEASED_RECIPE.method, **changes))


_NO_FLOW_EXTRAS = {"flow_keypoint_seeds": False, "flow_anchor_clusters": False}
#: Tab. 4 / Tab. 8 ablations, each the released recipe with one change (module docstring).
ABLATION_PRESETS: dict[str, TrainingRecipe] = {
    "marco-sup": _ablation(self_distillation=False),
    "sigma-fixed-1": _ablation(sigma_schedule="fixed-1"),
    "sigma-fixed-3": _ablation(sigma_schedule="fixed-3"),
    "flow-raw": _ablation(flow_pseudo_labels="nearest", **_NO_FLOW_EXTRAS),
    "flow-mnn-only": _ablation(flow_pseudo_labels="mutual", **_NO_FLOW_EXTRAS),
    "flow-no-gt-anchors": _ablation(**_NO_FLOW_EXTRAS),
    "geosc-objective": dataclasses.replace(_ablation(objective="geosc", self_distillation=False), flip_views=True),
}
PRESETS: dict[str, TrainingRecipe] = {"released": RELEASED_RECIPE, "paper": PAPER_RECIPE, **ABLATION_PRESETS}


class MARCOTrainer(TrainerBase):
    """Trains the ``MARCOModel`` of a ``MARCOMatcher`` (see the module docstring)."""

    @staticmethod
    def training_method_defaults(seed: int) -> dict[str, str]:
        """Training starts from zero adapters and a head drawn from the run's seed, as the authors' ``train.py``
        (no ``--checkpoint``), not from the released checkpoint that ``marco`` evaluates by default."""
        return {"checkpoint": "random", "seed": str(seed)}

    def __init__(self, matcher: nn.Module):
        model = getattr(matcher, "model", None)
        if model is None or not hasattr(model, "trainable_parameters"):
            raise ConfigError(f"MARCOTrainer needs a MARCOMatcher, got {type(matcher).__name__}")
        self.matcher = matcher
        self.model = model
        self.teacher: EMATeacher | None = None
        self.settings = MARCOTrainingSettings()
        self.plan: TrainingPlan | None = None
        self.mining_generator = torch.Generator()
        self.logit_scale: nn.Parameter | None = None  # Geo-SC's learnable log scale (objective "geosc" only)

    # -- setup -----------------------------------------------------------------------------------------------
    @staticmethod
    def training_presets() -> Mapping[str, TrainingRecipe]:
        return PRESETS

    @staticmethod
    def uses_flip_views(recipe: TrainingRecipe) -> bool:
        """Geo-SC's objective reads the flip views; MARCO's coarse-to-fine CE has no use for them."""
        settings = recipe.method if recipe.method is not None else MARCOTrainingSettings()
        return settings.objective == "geosc"

    @staticmethod
    def auto_train_resize(dataset: str) -> str:
        """``pad`` for PF-PASCAL and AP-10K, ``stretch`` elsewhere (module docstring, "Training canvas")."""
        return "pad" if dataset in PAD_DATASETS else "stretch"

    def configure_training(self, recipe: TrainingRecipe, plan: TrainingPlan) -> None:
        self.settings = recipe.method if recipe.method is not None else MARCOTrainingSettings()
        self.plan = plan
        self.model.freeze_backbone()
        self.sigma = sigma_schedule(self.settings.sigma_schedule, total_steps=plan.total_steps)
        self.supervised = CoarseToFineLoss(self.sigma, temperature=MARCO_TEMPERATURE)
        self.momentum = self.settings.momentum_schedule(plan.steps_per_epoch)
        self.flow = self.settings.flow_config()
        # Each process mines with its own stream, seeded like the authors' per-process numpy seed (seed + rank).
        self.mining_generator = torch.Generator().manual_seed(plan.seed + plan.rank)
        self.teacher = EMATeacher(self.model) if self.settings.self_distillation else None
        self.logit_scale = None
        if self.settings.objective == "geosc":
            device = self.model.trainable_parameters()[0].device
            self.logit_scale = nn.Parameter(torch.tensor(GEOSC_LOGIT_SCALE_INIT, device=device))
            if plan.world_size > 1:  # not inside the DDP module: average its gradient as DDP does for the rest
                self.logit_scale.register_hook(_average_over_processes)

    def trainable_parameters(self) -> list[nn.Parameter]:
        extra = [self.logit_scale] if self.logit_scale is not None else []
        return [*self.model.trainable_parameters(), *extra]

    def student(self) -> nn.Module:
        return self.model

    # -- one step ----------------------------------------------------------------------------------------------
    def training_step(self, batch: TrainingBatch, step: int, epoch: int) -> StepOutput:
        if self.plan is None:
            raise ConfigError("MARCOTrainer.training_step before configure_training")
        timer = StageTimer(batch.images.device)
        b = batch.size
        canvas_h, canvas_w = batch.canvas_size
        canvas = (canvas_w, canvas_h)

        with timer("student_forward"):
            images = batch.images.flatten(0, 1)
            use_flip = self.logit_scale is not None and batch.flip is not None  # Geo-SC's flip views
            if use_flip:  # one call: a DDP-wrapped student must run forward once per backward
                images = torch.cat([images, batch.flip.images.flatten(0, 1)])
            maps = self.student_forward(images)
            features = maps[: 2 * b].unflatten(0, (b, 2))
            flipped = maps[2 * b :].unflatten(0, (b, 2)) if use_flip else None
        mined: dict[int, Any] = {}
        counts = {"mined_pairs": 0, "mined_points": 0}
        if self.teacher is not None:
            with timer("teacher_forward"), torch.no_grad():
                teacher_features = self.teacher.module(batch.images.flatten(0, 1)).unflatten(0, (b, 2))
            with timer("mining"):
                num_points = batch.num_points.tolist()  # one device -> host copy per batch, not one per pair
                for i, n in enumerate(num_points):
                    result = mine_matches(teacher_features[i], batch.masks[i], batch.keypoints[i, :, :n],
                                          self.flow, generator=self.mining_generator)
                    if result.num_matches:
                        mined[i] = result
                counts = {"mined_pairs": len(mined), "mined_points": sum(r.num_matches for r in mined.values())}

        with timer("losses"):
            if self.logit_scale is not None:
                # Geo-SC's InfoNCE + l2 (+ the flip views' flow terms when ``flipped``): the mean over this
                # process's pairs (DDP's gradient average makes it the global mean)
                supervised, supervised_losses = geosc_batch_loss(features, flipped, batch, self.logit_scale,
                                                                 temperature=self.settings.geosc_temperature)
                diagnostics: dict[str, Any] = {"logit_scale": float(self.logit_scale.detach())}
            else:
                points = self._global_count(batch.visible.sum())
                source_points = batch.keypoints[:, 0].to(features.dtype)
                similarity = similarity_at_points(features[:, 0], features[:, 1], source_points, canvas)
                supervised = self.supervised(similarity, batch.keypoints[:, 1], canvas, step, batch.visible,
                                             reduction="sum") / points
                supervised_losses = {"gaussian_ce": supervised}
                diagnostics = {"sigma": self.supervised.sigma(step)}
            dense = features.new_zeros(())
            if mined:
                total = self._global_count(torch.tensor(counts["mined_points"], device=features.device))
                for i, result in mined.items():
                    scores = mined_similarity_maps(features[i, 0], features[i, 1], result.source, canvas)
                    dense = dense + flow_anchoring_loss(scores, result.target, canvas, MARCO_TEMPERATURE,
                                                        self.settings.flow_weight, num_points=1) / total
        return StepOutput(
            loss=supervised + dense,
            losses={**{k: v.detach() for k, v in supervised_losses.items()}, "flow_l2": dense.detach()},
            diagnostics={**diagnostics, **counts},
            seconds=dict(timer.seconds),
        )

    def _global_count(self, count: torch.Tensor) -> torch.Tensor:
        """A per-process count summed over processes and scaled by the process count, so that DDP's gradient
        average of ``loss / global * world`` equals the single-process gradient of ``sum / global``."""
        count = count.to(torch.float32).clamp(min=1)
        plan = self.plan
        if plan is None or plan.world_size == 1:
            return count
        total = count.detach().clone()
        torch.distributed.all_reduce(total)
        return total / plan.world_size

    def on_optimizer_step(self, step: int) -> Mapping[str, float]:
        if self.teacher is None:
            return {}
        momentum = self.momentum(step)
        self.teacher.update(self.model, momentum)
        return {"ema_momentum": momentum}

    # -- checkpoints -------------------------------------------------------------------------------------------
    def release_state(self) -> dict[str, Any]:
        """``{"model": adapters + head}`` (+ ``"ema"``: the teacher), as ``checkpoint.save_checkpoint`` writes."""
        state: dict[str, Any] = {"model": cpu_state_dict(self.model.trainable_state_dict())}
        if self.teacher is not None:
            state["ema"] = cpu_state_dict(self.teacher.state_dict())
        return state

    def load_release_state(self, state: Mapping[str, Any]) -> None:
        weights = model_state(state, "the checkpoint")
        check_state(self.model, weights, "the checkpoint")
        self.model.load_state_dict(weights, strict=False)  # the complement (the frozen backbone) is checked above
        if self.teacher is not None:
            if "ema" in state:
                self.teacher.load_state_dict(state["ema"])
            else:  # the authors' fallback when the teacher file is missing
                self.teacher.copy_from(self.model)

    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"mining_generator": self.mining_generator.get_state()}
        if self.logit_scale is not None:  # a training-only parameter: not part of the released model layout
            state["logit_scale"] = self.logit_scale.detach().to("cpu", copy=True)
        return state

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if "mining_generator" in state:
            self.mining_generator.set_state(state["mining_generator"])
        if self.logit_scale is not None and "logit_scale" in state:
            with torch.no_grad():
                self.logit_scale.copy_(state["logit_scale"])


def _average_over_processes(grad: torch.Tensor) -> torch.Tensor:
    grad = grad.clone()
    torch.distributed.all_reduce(grad)
    return grad / torch.distributed.get_world_size()


