"""Stable Diffusion features of the GeoAware-SC family (the optional ``diffusion`` extra, built on ``diffusers``).

GeoAware-SC (Junyi42/GeoAware-SC @ 99fd6b6, ``preprocess_map.py`` + ``model_utils/extractor_sd.py``) and DIY-SC
(odunkel/DIY-SC @ e1121c0, the same ``extractor_sd.py`` byte for byte, the same ``load_model`` call) compute
their SD features through ODISE -- the copy vendored in GeoAware-SC's ``third_party/ODISE``, which the authors
changed: upstream NVlabs/ODISE (04c42cb) taps each output block after the skip concatenation and has no
FreeU. This module re-implements that pipeline on ``diffusers`` modules; nothing
of ODISE, detectron2 or ``ldm`` is needed. What it reproduces, step by step (the authors' value, then ours):

- **Model**: ``load_model(diffusion_ver='v1-5', ...)`` -> ODISE's ``sd://v1-5``, the file
  ``v1-5-pruned-emaonly.ckpt`` of the Hugging Face repository ``stable-diffusion-v1-5/stable-diffusion-v1-5``.
  Here: the diffusers-format folders (``unet``, ``vae``, ``text_encoder``, ``tokenizer``) of that repository,
  ``StableDiffusionSpec.model_id`` / ``revision``.
- **Image size**: the image is resized to 960 px, longest side, centred zero padding (their ``resize(img,
  960)``; the caller does this, e.g. with ``ResizePolicy("longest_side_pad", 960)``). ODISE then runs the
  model on **512 x 512 sliding windows** (``FeatureExtractorBackbone.slide_forward``: crop = stride = 512;
  for 960 px the windows start at 0 and 448, so 2 x 2 windows that overlap by 64 px) and averages the
  overlapping cells. ``image_size`` / ``window``. (A canvas smaller than a window, never the authors' case,
  runs as one window at its own size; ODISE would upsample it to 512 px.)
- **Normalisation**: pixels in [0, 1] (ODISE divides 0-255 by 255), then ``(x - 0.5) / 0.5`` for the VAE,
  whose posterior **mean** (not a sample) times ``scaling_factor`` (0.18215) is the latent.
- **Timestep and noise**: one timestep, ``t = 50`` (``num_timesteps=50``) of the 1000-step "ldm_linear"
  schedule (betas = linspace(sqrt 0.00085, sqrt 0.012)^2, cumulative products in float64 as ODISE does);
  ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) n`` with ODISE's **shared noise**: ``torch.randn(1, 4, 64, 64)``
  from a CPU generator seeded 42, bicubically resized when a window's latent is not 64 x 64. The noise is the
  same for every image and every pass, so the features are deterministic. ``timestep``, ``noise_seed``.
- **Ensemble**: 1 (``NUM_ENSEMBLE = 1`` in GeoAware-SC, ``--num_ensemble 1`` in DIY-SC). With the shared noise
  every ensemble member would repeat the same pass, so there is no ensemble option here.
- **Layers**: ``unet_block_indices=(2, 5, 8, 11)`` with ``decoder_only=True``: the feature of output block
  ``i`` is the hidden state *entering* it, before the skip connection is concatenated -- i.e. the output of
  output block ``i - 1``. ODISE names them s5 (block 2), s4 (5), s3 (8), s2 (11); the authors delete s2.
  In diffusers terms, output block ``i`` is ``up_blocks[i // 3].resnets[i % 3]``. ``taps`` lists the kept
  blocks in the order returned: (8, 5, 2) = s3, s4, s5.
- **FreeU** (their ``LdmExtractor.freeu = True``, b1 1.2, b2 1.4, s1 0.9, s2 0.2): before each output block,
  a hidden state of 1280 channels has its first half multiplied by b1 and its skip Fourier-filtered with s1
  (a 2 x 2 low-frequency box scaled); 640 channels: b2 and s2. The condition is the channel count (as the
  FreeU authors' code), which is not diffusers' built-in FreeU (that one keys on the up-block index, and
  treats up block 1 with b2/s2 where ODISE uses b1/s1) -- hence the own decoder loop below. The scaling is
  **in place** on the tensor ODISE has just stored as the feature (``h.contiguous()`` returns ``h`` itself),
  so the returned s5 and s4 carry the x1.2 on their first 640 channels and s3 the x1.4 on its first 320;
  reproduced. In a UNet of other widths, "1280" and "640" read as the deepest width and half of it.
- **Prompt**: no caption is passed, so ODISE's **implicit captioner** (``LdmImplicitCaptionerExtractor``)
  conditions the UNet: the window's CLIP ViT-L/14-336 image embedding (OpenAI weights; resize to 336 bicubic,
  centre crop, CLIP mean/std; the projected class token) goes through ODISE's learned ``clip_project``
  (linear + 77 positional embeddings) and ``time_embed_project`` (linear + 1 positional embedding): the
  context is ``embed("") + tanh(alpha_cond) * clip_project(e)`` and ``tanh(alpha_cond_time_embed) *
  time_embed_project(e)`` is added to the UNet's time embedding. Those four tensors come from ODISE's
  released checkpoint ``odise_label_coco_50e-b67d2efc.pth`` (keys ``backbone.feature_extractor.*``; the rest of
  the file is unused). ``prompt="some text"`` instead conditions on that text's CLIP embedding with no
  captioner at all (ODISE's caption path would still add the captioner's time-embedding term).
- **Output**: the three maps, raw (not normalised), per image: s3 ``(640, S/16, S/16)``, s4 ``(1280, S/32,
  S/32)``, s5 ``(1280, S/64, S/64)`` for canvas side S -- (640, 60, 60), (1280, 30, 30), (1280, 15, 15) at
  960 px. ``on_grid`` brings them to the DINOv2 grid as the authors' ``pck_train.py`` does (bilinear,
  ``align_corners=False``, concatenated s3, s4, s5: 3200 channels, placed *before* DINOv2's 768 in the
  adapter input); the adapter's L2 normalisation comes after it.

What cannot be verified here (no weights can be downloaded on this machine, and the SD weights are not
reachable from it): that the diffusers-format folders hold the same EMA weights as ``v1-5-pruned-emaonly.ckpt``;
the key names and shapes of the captioner tensors inside ODISE's release (taken from ODISE's module names;
``load_captioner_weights`` checks them and says what it found); whether the authors' torchvision antialiased
the 512 -> 336 CLIP resize (ours does, as torchvision >= 0.17); numeric parity with their features. The
extraction path itself is tested end to end on a tiny random UNet / VAE / text encoder / CLIP (shapes, taps,
FreeU, timestep, noise, windows, determinism).

``StableDiffusionFeatures.random`` builds the same architectures with random weights offline (``weights=random``:
SD 1.5's UNet, VAE and text encoder, CLIP ViT-L/14-336; the captioner with ODISE's closed gates); having no
tokenizer files, it encodes only the empty prompt.

Weights download only when a user builds the model: the SD and CLIP folders through the Hugging Face cache
(``$HF_HOME/hub``, default ``~/.cache/huggingface/hub``), ODISE's checkpoint into the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, like every corrbench backbone). Never in tests.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from corrbench.backbones.weights import read_checkpoint_file, resolve_weights
from corrbench.errors import ConfigError, DataError

INSTALL_EXTRA = "pip install 'corrbench[diffusion]'"

# OpenAI CLIP's RGB mean / std (the implicit captioner's CLIP preprocessing)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ODISE_RELEASE = "https://github.com/NVlabs/ODISE/releases/download/v1.0.0/"
CAPTIONER_PREFIX = "backbone.feature_extractor."  # where ODISE's model keeps LdmImplicitCaptionerExtractor

# The released models' architectures, for weights=random (built offline, no download): the config.json fields of
# stable-diffusion-v1-5's unet/, vae/ and text_encoder/ folders, and OpenAI CLIP ViT-L/14-336's vision tower.
# They build 859,520,964 / 83,653,863 / 123,060,480 / 304,293,888 parameters (diffusers 0.27.2 and 0.42.1).
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8,
    norm_num_groups=32, norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0, downsample_padding=1, act_fn="silu")
SD15_VAE = dict(
    in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
    sample_size=512, act_fn="silu")
SD15_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
CLIP_L14_336_VISION = dict(
    image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
    num_attention_heads=16, projection_dim=768, hidden_act="quick_gelu")


def require_diffusion_extra() -> tuple[Any, Any]:
    """``(diffusers, transformers)``, or a one-line ConfigError naming the extra when either is missing."""
    modules, missing = [], []
    for name in ("diffusers", "transformers"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(f"Stable Diffusion features need the optional 'diffusion' extra ({' and '.join(missing)} "
                          f"not installed): {INSTALL_EXTRA}")
    return modules[0], modules[1]


@dataclass(frozen=True)
class StableDiffusionSpec:
    """Every choice that moves the SD features (defaults: GeoAware-SC's and DIY-SC's; see the module doc).

    Bump ``version`` when a default changes: results record the spec.
    """

    model_id: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    revision: str = "main"
    image_size: int = 960
    window: int = 512
    timestep: int = 50
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    noise_seed: int = 42
    noise_latent_size: int = 64  # ODISE draws its shared noise at SD's own latent size (512 / 8)
    taps: tuple[int, ...] = (8, 5, 2)  # ldm output-block indices, returned in this order (s3, s4, s5)
    freeu: tuple[float, float, float, float] = (1.2, 1.4, 0.9, 0.2)  # b1, b2, s1, s2
    prompt: str | None = None  # None: ODISE's implicit captioner
    clip_model_id: str = "openai/clip-vit-large-patch14-336"
    captioner_url: str = ODISE_RELEASE + "odise_label_coco_50e-b67d2efc.pth"
    version: int = 1

    def __post_init__(self) -> None:
        for name in ("image_size", "window"):
            value = getattr(self, name)
            if value < 64 or value % 64:
                raise ConfigError(f"StableDiffusionSpec.{name} must be a positive multiple of 64 (the UNet "
                                  f"halves the 1/8 latent three times), got {value}")
        if not 0 <= self.timestep < self.num_train_timesteps:
            raise ConfigError(f"StableDiffusionSpec.timestep must be in 0..{self.num_train_timesteps - 1}, "
                              f"got {self.timestep}")
        if not self.taps or any(t < 0 for t in self.taps):
            raise ConfigError(f"StableDiffusionSpec.taps must be output-block indices >= 0, got {self.taps}")

    @property
    def captioner_filename(self) -> str:
        return self.captioner_url.rsplit("/", 1)[-1]

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PositionalLinear(nn.Module):
    """A linear map followed by a learned per-position offset: ``(B, in) -> (B, seq_len, out)`` (ODISE's)."""

    def __init__(self, in_features: int, out_features: int, seq_len: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.positional_embedding = nn.Parameter(torch.empty(1, seq_len, out_features))
        nn.init.trunc_normal_(self.positional_embedding, std=0.02)  # ODISE's initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).unsqueeze(1) + self.positional_embedding


class ImplicitCaptioner(nn.Module):
    """ODISE's learned map from a CLIP image embedding to UNet conditioning; parameter names are ODISE's, so
    its checkpoint loads after dropping ``backbone.feature_extractor.``. The gates start at 0 (tanh(0) = 0:
    an untrained captioner is the empty prompt)."""

    def __init__(self, clip_dim: int, context_len: int, context_dim: int, time_dim: int):
        super().__init__()
        self.clip_project = PositionalLinear(clip_dim, context_dim, context_len)
        self.alpha_cond = nn.Parameter(torch.zeros(1, context_len, context_dim))
        self.time_embed_project = PositionalLinear(clip_dim, time_dim, 1)  # one timestep
        self.alpha_cond_time_embed = nn.Parameter(torch.zeros(time_dim))

    def forward(self, image_embed: torch.Tensor, empty_context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(context (B, L, D), time-embedding offset (B, T))`` for CLIP embeddings ``(B, clip_dim)``."""
        context = empty_context + torch.tanh(self.alpha_cond) * self.clip_project(image_embed)
        time_offset = torch.tanh(self.alpha_cond_time_embed) * self.time_embed_project(image_embed)[:, 0]
        return context, time_offset


def load_captioner_weights(captioner: ImplicitCaptioner, path) -> None:
    """Load the captioner's tensors from ODISE's released checkpoint (a detectron2 ``{"model": ...}`` file)."""
    content = read_checkpoint_file(path, what="ODISE checkpoint")
    state = content.get("model", content)
    wanted = captioner.state_dict()
    found = {k[len(CAPTIONER_PREFIX):]: v for k, v in state.items() if k.startswith(CAPTIONER_PREFIX)}
    missing = sorted(k for k in wanted if k not in found)
    if missing:
        raise DataError(f"{path} has no {CAPTIONER_PREFIX}{missing[0]} (and {len(missing) - 1} more captioner "
                        f"tensors missing)", hint=f"expected ODISE's {StableDiffusionSpec().captioner_filename}")
    for key, value in wanted.items():
        if tuple(found[key].shape) != tuple(value.shape):
            raise DataError(f"{path}: {CAPTIONER_PREFIX}{key} has shape {tuple(found[key].shape)}, expected "
                            f"{tuple(value.shape)}", hint="the SD text encoder / CLIP model do not match ODISE's")
    captioner.load_state_dict({k: found[k] for k in wanted})


def alphas_cumprod(spec: StableDiffusionSpec) -> torch.Tensor:
    """The "ldm_linear" schedule's cumulative alphas, in float64 as ODISE computes them (diffusers' scheduler
    works in float32, which moves the 7th digit)."""
    betas = torch.linspace(spec.beta_start ** 0.5, spec.beta_end ** 0.5, spec.num_train_timesteps,
                           dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def shared_noise(spec: StableDiffusionSpec, latent_channels: int) -> torch.Tensor:
    """ODISE's one noise tensor, ``(1, C, n, n)`` from a CPU generator seeded ``noise_seed``."""
    generator = torch.Generator().manual_seed(spec.noise_seed)
    n = spec.noise_latent_size
    return torch.randn(1, latent_channels, n, n, generator=generator)


def fourier_filter(x: torch.Tensor, scale: float, threshold: int = 1) -> torch.Tensor:
    """FreeU's skip filter: scale the centred ``2 threshold`` square of low frequencies by ``scale``."""
    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    h, w = freq.shape[-2:]
    mask = torch.ones(h, w, device=x.device)
    mask[h // 2 - threshold:h // 2 + threshold, w // 2 - threshold:w // 2 + threshold] = scale
    freq = torch.fft.ifftshift(freq * mask, dim=(-2, -1))
    return torch.fft.ifftn(freq, dim=(-2, -1)).real.to(x.dtype)


def window_origins(side: int, window: int) -> list[int]:
    """Start of each sliding window along one side (ODISE's slide_forward: stride = window, the last window
    pushed back inside the image)."""
    crop = min(window, side)
    count = max(side - crop + crop - 1, 0) // crop + 1
    return [max(min(i * crop + crop, side) - crop, 0) for i in range(count)]


class StableDiffusionFeatures(nn.Module):
    """``features(canvases) -> [s3, s4, s5]``: SD feature maps of square canvases, as GeoAware-SC / DIY-SC.

    ``canvases``: ``(B, 3, S, S)`` RGB in [0, 1], already resized (longest side ``spec.image_size``, centred
    zero padding); S must be a multiple of 64. Returns three raw ``(B, C, S / stride, S / stride)`` maps --
    for SD 1.5: (640, /16), (1280, /32), (1280, /64). ``on_grid`` turns them into the adapter's input block.

    Build it with ``from_pretrained(spec)`` (downloads on first use, see the module doc) or from modules in
    memory (tests build tiny random ones): a diffusers ``UNet2DConditionModel`` and ``AutoencoderKL``, a
    ``text_encoder(list[str]) -> (B, L, D)`` callable, and for the implicit captioner a
    ``clip_image_encoder((B, 3, s, s) normalised) -> (B, clip_dim)`` plus an ``ImplicitCaptioner``.
    """

    def __init__(self, spec: StableDiffusionSpec, *, unet: nn.Module, vae: nn.Module, text_encoder,
                 clip_image_encoder: nn.Module | None = None, clip_image_size: int = 336,
                 captioner: ImplicitCaptioner | None = None, weights_info: dict[str, Any] | None = None):
        super().__init__()
        if spec.prompt is None and (clip_image_encoder is None or captioner is None):
            raise ConfigError("the implicit captioner (prompt=None) needs a CLIP image encoder and ODISE's "
                              "captioner weights", hint="build with from_pretrained, or give a text prompt")
        n_out = len(unet.up_blocks) * len(unet.up_blocks[0].resnets)
        if max(spec.taps) >= n_out:
            raise ConfigError(f"StableDiffusionSpec.taps {spec.taps}: this UNet has output blocks 0..{n_out - 1}")
        self.spec = spec
        self.unet = unet.requires_grad_(False).eval()
        self.vae = vae.requires_grad_(False).eval()
        self.text_encoder = text_encoder
        self.clip_image_encoder = clip_image_encoder
        self.clip_image_size = clip_image_size
        self.captioner = captioner
        self._weights_info = weights_info or {"source": "modules given in memory"}
        widest = unet.config.block_out_channels[-1]
        b1, b2, s1, s2 = spec.freeu
        self.freeu_by_channels = {widest: (b1, s1), widest // 2: (b2, s2)}
        abar = alphas_cumprod(spec)[spec.timestep]
        self.signal_scale, self.noise_scale = float(abar.sqrt()), float((1 - abar).sqrt())
        self.register_buffer("noise", shared_noise(spec, unet.config.in_channels), persistent=False)
        self.register_buffer("clip_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        with torch.no_grad():
            self.register_buffer("empty_context", self._embed_text([""]), persistent=False)

    @classmethod
    def random(cls, spec: StableDiffusionSpec | None = None, *, seed: int = 0, unet: dict = SD15_UNET,
               vae: dict = SD15_VAE, text: dict = SD15_TEXT, clip: dict = CLIP_L14_336_VISION
               ) -> "StableDiffusionFeatures":
        """The released architectures with random weights, built offline (``weights=random``); the captioner
        starts as ODISE's does (closed gates: the empty prompt). There are no tokenizer files offline, so only
        the empty prompt can be encoded (``prompt=None`` or ``""``). Architectures can be swapped for tests."""
        spec = spec or StableDiffusionSpec()
        if spec.prompt not in (None, ""):
            raise ConfigError(f"prompt {spec.prompt!r} needs the released tokenizer; random weights encode only "
                              "the empty prompt", hint="use prompt=None (the implicit captioner) or from_pretrained")
        diffusers, transformers = require_diffusion_extra()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet_model = diffusers.UNet2DConditionModel(**unet)
            vae_model = diffusers.AutoencoderKL(**vae)
            text_model = transformers.CLIPTextModel(transformers.CLIPTextConfig(**text))
            vision = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**clip))
            captioner = ImplicitCaptioner(
                vision.config.projection_dim, text_model.config.max_position_embeddings,
                text_model.config.hidden_size, unet_model.time_embedding.linear_2.out_features)
        return cls(spec, unet=unet_model, vae=vae_model, text_encoder=EmptyPromptEncoder(text_model),
                   clip_image_encoder=ClipImageEmbedder(vision), clip_image_size=vision.config.image_size,
                   captioner=captioner, weights_info={"source": "random", "seed": seed})

    @classmethod
    def from_pretrained(cls, spec: StableDiffusionSpec | None = None, *, captioner_weights=None,
                        progress: bool = True) -> "StableDiffusionFeatures":
        """The released models: SD and CLIP from the Hugging Face cache (downloaded there on first use), ODISE's
        captioner from the torch hub cache (or ``captioner_weights``, a path to the file)."""
        spec = spec or StableDiffusionSpec()
        diffusers, transformers = require_diffusion_extra()
        where = dict(revision=spec.revision)
        unet = diffusers.UNet2DConditionModel.from_pretrained(spec.model_id, subfolder="unet", **where)
        vae = diffusers.AutoencoderKL.from_pretrained(spec.model_id, subfolder="vae", **where)
        tokenizer = transformers.CLIPTokenizer.from_pretrained(spec.model_id, subfolder="tokenizer", **where)
        text_model = transformers.CLIPTextModel.from_pretrained(spec.model_id, subfolder="text_encoder", **where)
        info: dict[str, Any] = {"stable_diffusion": f"{spec.model_id}@{spec.revision}"}
        clip = captioner = None
        clip_size = 336
        if spec.prompt is None:
            vision = transformers.CLIPVisionModelWithProjection.from_pretrained(spec.clip_model_id)
            clip, clip_size = ClipImageEmbedder(vision), vision.config.image_size
            captioner = ImplicitCaptioner(vision.config.projection_dim, tokenizer.model_max_length,
                                          text_model.config.hidden_size, unet.time_embedding.linear_2.out_features)
            path, odise = resolve_weights(spec.captioner_url, spec.captioner_filename, captioner_weights,
                                          progress=progress)
            load_captioner_weights(captioner, path)
            info.update(clip=spec.clip_model_id, captioner=odise)
        return cls(spec, unet=unet, vae=vae, text_encoder=HuggingFaceTextEncoder(tokenizer, text_model),
                   clip_image_encoder=clip, clip_image_size=clip_size, captioner=captioner, weights_info=info)

    def weights_info(self) -> dict[str, Any]:
        return {**self._weights_info, "spec": self.spec.record()}

    @property
    def tap_channels(self) -> tuple[int, ...]:
        """Channels of each returned map, in ``spec.taps`` order: the hidden state entering output block ``i`` is
        the mid block's output (``i = 0``, the deepest width) or output block ``i - 1``'s (its up block's
        width). SD 1.5's (8, 5, 2): (640, 1280, 1280)."""
        widths = list(reversed(self.unet.config.block_out_channels))
        per_block = len(self.unet.up_blocks[0].resnets)
        return tuple(widths[0] if i == 0 else widths[(i - 1) // per_block] for i in self.spec.taps)

    # --- the pipeline ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def forward(self, canvases: torch.Tensor) -> list[torch.Tensor]:
        if canvases.ndim != 4 or canvases.shape[1] != 3 or canvases.shape[-1] % 64 or canvases.shape[-2] % 64:
            raise ConfigError(f"SD features take (B, 3, H, W) canvases with H and W multiples of 64, got "
                              f"{tuple(canvases.shape)}", hint=f"resize to {self.spec.image_size} px first")
        height, width = canvases.shape[-2:]
        crop = min(self.spec.window, height, width)
        sums = counts = strides = None
        for y in window_origins(height, self.spec.window):
            for x in window_origins(width, self.spec.window):
                maps = self.window_features(canvases[:, :, y:y + crop, x:x + crop])
                if sums is None:
                    strides = [crop // m.shape[-1] for m in maps]  # canvas pixels per map cell
                    sums = [m.new_zeros(*m.shape[:2], height // s, width // s) for m, s in zip(maps, strides)]
                    counts = [torch.zeros_like(total[:1, :1]) for total in sums]
                for total, count, m, s in zip(sums, counts, maps, strides):
                    rows, cols = slice(y // s, y // s + m.shape[-2]), slice(x // s, x // s + m.shape[-1])
                    total[..., rows, cols] += m
                    count[..., rows, cols] += 1
        return [total / count for total, count in zip(sums, counts)]

    def window_features(self, window: torch.Tensor) -> list[torch.Tensor]:
        """The tapped maps of one ``(B, 3, s, s)`` window in [0, 1], in ``spec.taps`` order."""
        latent = self.vae.encode(window * 2 - 1).latent_dist.mean * self.vae.config.scaling_factor
        noise = self.noise
        if noise.shape[-2:] != latent.shape[-2:]:
            noise = F.interpolate(noise, size=latent.shape[-2:], mode="bicubic", align_corners=False)
        noisy = self.signal_scale * latent + self.noise_scale * noise.expand_as(latent)
        context, time_offset = self.conditioning(window)
        return self.unet_taps(noisy, context, time_offset)

    def conditioning(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = window.shape[0]
        if self.spec.prompt is not None:
            return self._embed_text([self.spec.prompt] * batch), None
        clip_input = F.interpolate(window, size=(self.clip_image_size,) * 2, mode="bicubic", align_corners=False,
                                   antialias=True)
        image_embed = self.clip_image_encoder((clip_input - self.clip_mean) / self.clip_std)
        return self.captioner(image_embed, self.empty_context.expand(batch, -1, -1))

    def unet_taps(self, sample: torch.Tensor, context: torch.Tensor,
                  time_offset: torch.Tensor | None) -> list[torch.Tensor]:
        """Run the UNet at ``spec.timestep`` up to the last tap; the hidden state entering each tapped output
        block, after FreeU's in-place scaling (see the module doc)."""
        unet = self.unet
        timesteps = torch.full((sample.shape[0],), self.spec.timestep, device=sample.device)
        emb = unet.time_embedding(unet.time_proj(timesteps).to(sample.dtype))
        if time_offset is not None:
            emb = emb + time_offset
        h = unet.conv_in(sample)
        skips = [h]
        for block in unet.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=context)
            else:
                h, res = block(hidden_states=h, temb=emb)
            skips.extend(res)
        h = unet.mid_block(h, emb, encoder_hidden_states=context)

        taps: dict[int, torch.Tensor] = {}
        index = 0
        last = max(self.spec.taps)
        for block in unet.up_blocks:
            attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
            for resnet, attention in zip(block.resnets, attentions):
                skip = skips.pop()
                h, skip = self._freeu(h, skip)
                if index in self.spec.taps:
                    taps[index] = h
                if index == last:
                    return [taps[i] for i in self.spec.taps]
                h = resnet(torch.cat([h, skip], dim=1), emb)
                if attention is not None:
                    h = attention(h, encoder_hidden_states=context, return_dict=False)[0]
                index += 1
            for upsampler in block.upsamplers or []:
                h = upsampler(h)
        raise AssertionError("unreachable: taps are checked against the UNet in __init__")

    def _freeu(self, h: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        factors = self.freeu_by_channels.get(h.shape[1])
        if factors is None:
            return h, skip
        backbone, skip_scale = factors
        half = h.shape[1] // 2
        h = torch.cat([h[:, :half] * backbone, h[:, half:]], dim=1)
        return h, fourier_filter(skip, skip_scale)

    def _embed_text(self, texts: list[str]) -> torch.Tensor:
        return self.text_encoder(texts)

    # --- helpers for the adapter input ----------------------------------------------------------------------

    @staticmethod
    def on_grid(maps: Sequence[torch.Tensor], grid: int | tuple[int, int]) -> torch.Tensor:
        """``[s3, s4, s5]`` resized to the DINOv2 grid and concatenated, ``(B, 3200, h, w)`` for SD 1.5: the SD
        part of the adapter input, in the authors' order and interpolation (``pck_train.py``)."""
        size = (grid, grid) if isinstance(grid, int) else tuple(grid)
        return torch.cat([m if tuple(m.shape[-2:]) == size else
                          F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps], dim=1)


class HuggingFaceTextEncoder(nn.Module):
    """SD's text conditioning: CLIP tokens padded to the tokenizer's 77, the text model's last hidden state."""

    def __init__(self, tokenizer, text_model: nn.Module):
        super().__init__()
        self.tokenizer = tokenizer
        self.text_model = text_model.requires_grad_(False).eval()

    def forward(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt")
        ids = tokens.input_ids.to(next(self.text_model.parameters()).device)
        return self.text_model(input_ids=ids).last_hidden_state


class EmptyPromptEncoder(nn.Module):
    """The text model on the empty prompt's CLIP tokens (start, then end-of-text padding to the context length,
    as SD's tokenizer pads), for random weights, which have no tokenizer files."""

    def __init__(self, text_model: nn.Module):
        super().__init__()
        self.text_model = text_model.requires_grad_(False).eval()

    def forward(self, texts: list[str]) -> torch.Tensor:
        if any(texts):
            raise ConfigError("random SD weights have no tokenizer: only the empty prompt can be encoded")
        config = self.text_model.config
        ids = torch.full((len(texts), config.max_position_embeddings), config.eos_token_id,
                         device=next(self.text_model.parameters()).device)
        ids[:, 0] = config.bos_token_id
        return self.text_model(input_ids=ids).last_hidden_state


class ClipImageEmbedder(nn.Module):
    """CLIP's projected class token (``image_embeds``, not L2-normalised: ODISE's ``normalize=False``)."""

    def __init__(self, vision_model: nn.Module):
        super().__init__()
        self.vision_model = vision_model.requires_grad_(False).eval()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixels).image_embeds


__all__ = ["INSTALL_EXTRA", "ClipImageEmbedder", "EmptyPromptEncoder", "HuggingFaceTextEncoder", "ImplicitCaptioner",
           "StableDiffusionFeatures", "StableDiffusionSpec", "alphas_cumprod", "load_captioner_weights",
           "require_diffusion_extra", "window_origins"]
