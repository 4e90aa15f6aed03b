"""An emulated accelerator: a CPU test mode in which a tensor on the wrong device fails as on a GPU.

On a CPU-only machine every tensor lives on the CPU, so a tensor the code forgot to move (a cache read
from a checkpoint, an index built on the host, ``.numpy()`` of a device tensor) passes every test and
crashes the first real GPU run (issue 21: RecBole's evaluation cache put back from a checkpoint read
onto the CPU). Inside ``emulated_accelerator()``:

* the run's device (``config['device']``) is ``torch.device("meta")``, standing for the accelerator;
* moving a tensor there (``.to(device)``, ``Module.to``, factories with ``device=``) keeps its values on
  the CPU but tags the tensor as on the accelerator, and ``.device`` of a tagged tensor reports it;
  ``.cpu()`` / ``.to("cpu")`` return an untagged tensor. Results of an op on tagged tensors are tagged;
* CUDA's device checks are applied to every torch call: indexing a host tensor with device indices
  raises CUDA's own message ("indices should be either on cpu or on the same device as the indexed
  tensor (cpu)"; ``index_put_`` likewise, its values on self's device), any other op whose tensor operands live on both sides raises "Expected all tensors to
  be on the same device", and ``.numpy()`` of a device tensor raises as it does on CUDA. Allowed, as on
  CUDA: copies (``copy_``, ``to``), 0-dim host tensors (scalars) and indexing a device tensor with host
  indices.

Tags live in a registry of weak references (sparse tensors cannot be subclassed), so the tensors
themselves stay plain: checkpoints written inside the mode hold plain tensors, as a GPU run's do.
"""

import contextlib
import types
import weakref

import pytest
import torch
from torch.overrides import TorchFunctionMode

ACCELERATOR = torch.device("meta")
_TAGGED = {}  # id(tensor) -> weakref(tensor)

# calls that may take tensors of both sides (CUDA copies across devices)
_COPIES = {torch.Tensor.copy_, torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda, torch.Tensor.__reduce_ex__,
           torch.Tensor.__deepcopy__, torch.Tensor.__setstate__, torch.Tensor.__repr__, torch.Tensor.__format__,
           torch._has_compatible_shallow_copy_type, torch.Tensor.__setitem__, torch.Tensor.__getitem__}


_INDEX_PUT = {torch.Tensor.index_put_, torch.Tensor.index_put, torch.index_put}


class DeviceMismatch(RuntimeError):
    """What CUDA raises when an op's tensors live on different devices."""


def on_device(tensor):
    """Whether ``tensor`` is on the emulated accelerator."""
    ref = _TAGGED.get(id(tensor))
    return ref is not None and ref() is tensor


def _tag(tensor):
    if not on_device(tensor):
        key = id(tensor)
        _TAGGED[key] = weakref.ref(tensor, lambda ref, key=key: _TAGGED.pop(key, None) if _TAGGED.get(key) is ref else None)


def _untag(tensor):
    _TAGGED.pop(id(tensor), None)


def _alias(tensor):
    """A new tensor object for the same values (``.to`` and ``.cpu`` of a CPU tensor return ``self``)."""
    return tensor.clone() if tensor.is_sparse else tensor.view_as(tensor)


def _tensors(value, found):
    if isinstance(value, torch.Tensor):
        found.append(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _tensors(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _tensors(item, found)
    return found


def _is_accelerator(device):
    if isinstance(device, str):
        device = torch.device(device)
    return isinstance(device, torch.device) and device.type == ACCELERATOR.type


def _target(func, args, kwargs):
    """Where a move or factory call puts its result: 'device', 'host' or None (as its inputs)."""
    if func is torch.Tensor.cpu:
        return "host"
    if func is torch.Tensor.cuda:
        return "device"
    device = kwargs.get("device")
    if device is None and func is torch.Tensor.to:
        device = next((a for a in args[1:] if isinstance(a, (str, torch.device, torch.Tensor))), None)
        if isinstance(device, torch.Tensor):
            return "device" if on_device(device) else "host"
    if device is None:
        return None
    return "device" if _is_accelerator(device) else "host"


def _check(func, args, kwargs):
    if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
        if not on_device(args[0]) and any(on_device(t) for t in _tensors(args[1:2], [])):
            raise DeviceMismatch("indices should be either on cpu or on the same device as the indexed tensor (cpu)")
        return
    if func in _INDEX_PUT:  # indices as for indexing (each on the host or self's device); values on self's device
        if not on_device(args[0]) and any(on_device(t) for t in _tensors(args[1:2], [])):
            raise DeviceMismatch("indices should be either on cpu or on the same device as the indexed tensor (cpu)")
        values = _tensors((args[2:], kwargs.get("values")), [])
        if any(on_device(v) != on_device(args[0]) and v.dim() > 0 for v in values):
            raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two devices, "
                                 f"{ACCELERATOR} and cpu! (in index_put_)")
        return
    if func in (torch.Tensor.numpy, torch.Tensor.__array__) and on_device(args[0]):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to "
                        "host memory first.")
    if func in _COPIES:
        return
    tensors = _tensors((args, kwargs), [])
    if any(on_device(t) for t in tensors) and any(not on_device(t) and t.dim() > 0 for t in tensors):
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", str(func))
        raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two devices, "
                             f"{ACCELERATOR} and cpu! (in {name})")


def _property(func, args):
    """Tensor attribute access (``.device``, ``.data``, ``.grad`` ...), which torch routes through the mode."""
    name = func.__self__.__name__
    if func.__name__ == "__get__":
        tensor = args[0]
        if name == "device":
            return ACCELERATOR if on_device(tensor) else func(*args)
        if name in ("is_cpu", "is_cuda"):
            return on_device(tensor) == (name == "is_cuda")
        value = func(*args)
        if isinstance(value, torch.Tensor) and on_device(tensor):
            _tag(value)
        return value
    tensor, value = args[0], args[1]
    if name == "grad" and isinstance(value, torch.Tensor) and on_device(value) != on_device(tensor):
        raise DeviceMismatch("assigned grad has data located on a different device")
    result = func(*args)
    if name == "data":  # Module.to moves a parameter by assigning its .data
        (_tag if on_device(value) else _untag)(tensor)
    return result


def _strip(args, kwargs):
    """The call with the accelerator replaced by the CPU, where the values really live."""
    args = tuple(torch.device("cpu") if _is_accelerator(a) else a for a in args)
    kwargs = {k: torch.device("cpu") if k == "device" and _is_accelerator(v) else v for k, v in kwargs.items()}
    return args, kwargs


class _Mode(TorchFunctionMode):
    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if isinstance(getattr(func, "__self__", None), types.GetSetDescriptorType):
            return _property(func, args)
        _check(func, args, kwargs)
        target = _target(func, args, kwargs)
        if func is torch.Tensor.cuda:
            func, args, kwargs = torch.Tensor.to, (args[0], ACCELERATOR), {}
        inputs = _tensors((args, kwargs), [])
        if target is not None:
            args, kwargs = _strip(args, kwargs)
            if func is torch.Tensor.to:
                args = tuple(a.dtype if isinstance(a, torch.Tensor) and i > 0 else a for i, a in enumerate(args))
        result = func(*args, **kwargs)
        if target == "device":
            if any(result is t for t in inputs) and not on_device(result):
                result = _alias(result)
            _tag(result)
        elif target == "host":
            if on_device(result):
                result = _alias(result)
        elif any(on_device(t) for t in inputs):
            for out in _tensors(result, []):
                if not any(out is t for t in inputs):  # an in-place op's self keeps its own device
                    _tag(out)
        return result


@contextlib.contextmanager
def emulated_accelerator():
    """Run the block as on a GPU: every run's ``config['device']`` is the emulated accelerator."""
    from recbole_micro.config import Config

    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _emulate(monkeypatch, Config)


def _emulate(monkeypatch, Config):
    original = Config._init_device

    def init_device(self):
        original(self)
        self.final_config_dict["device"] = ACCELERATOR

    monkeypatch.setattr(Config, "_init_device", init_device)
    autocast = torch.autocast

    def host_autocast(device_type, *args, **kwargs):  # autocast has no 'meta' kernels: the values are on the CPU
        return autocast("cpu" if device_type == ACCELERATOR.type else device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", host_autocast)
    reduce, deepcopy = torch.Tensor._reduce_ex_internal, torch.Tensor.__deepcopy__

    def reduce_plain(tensor, protocol):  # pickled with its real device: a GPU file holds the values
        with torch._C.DisableTorchFunction():
            return reduce(tensor, protocol)

    def deepcopy_tagged(tensor, memo):
        with torch._C.DisableTorchFunction():
            copy = deepcopy(tensor, memo)
        if on_device(tensor):
            _tag(copy)
        return copy

    monkeypatch.setattr(torch.Tensor, "_reduce_ex_internal", reduce_plain)
    monkeypatch.setattr(torch.Tensor, "__deepcopy__", deepcopy_tagged)
    with _Mode():
        yield ACCELERATOR
