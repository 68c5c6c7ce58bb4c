"""Load a checkpoint safely and classify pictures with it.

    from lit_opt import inference
    model = inference.load("checkpoints/RUN/best.ckpt")   # a ClassifierModule in eval mode, on CPU
    inference.classify(model, "seven.png")                # {"7": 0.981, "1": 0.012, ...}, most probable first
    pre = inference.preprocess("seven.png", model)        # pre.tensor: the net's input; pre.picture: 28x28 uint8

    python -m lit_opt classify --ckpt_path checkpoints/RUN/best.ckpt seven.png two.jpg
    python -m lit_opt classify --ckpt_path checkpoints/RUN/best.ckpt --json *.png

`load` reads the file with `torch.load(weights_only=True)`: only tensors and plain data
are unpickled, so a checkpoint from anywhere cannot run code. The model is rebuilt from
the constructor arguments the checkpoint records (`hyper_parameters`), and its weights
must match that model exactly. Anything else (a missing, truncated or corrupt file, a
file that is not a checkpoint, a checkpoint of another kind of model, weights that do
not fit) raises `CheckpointError` with one message naming the file and what was wrong.

Preprocessing (any size, gray/RGB/RGBA, either polarity; the MNIST recipe for digits)
lives in `lit_opt.preprocess`, which needs no torch until the tensor is made.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import pickle
import sys
from pathlib import Path
from typing import Optional, Union

from lit_opt.errors import CheckpointError, LitOptError
from lit_opt.found_config import plain_data_problem
from lit_opt.preprocess import (  # noqa: F401  (re-exported: the inference API in one place)
    EmptyImageError,
    ImageError,
    ImageLike,
    Preprocessed,
    data_info_of,
    preprocess,
)

PathLike = Union[str, os.PathLike]


# --- loading -------------------------------------------------------------------------------


def read_checkpoint(path: PathLike) -> dict:
    """torch.load(weights_only=True) with every failure turned into a CheckpointError."""
    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give a .ckpt file (e.g. {path / 'best.ckpt'})")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes), not a checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        garbage = "Unsupported operand" in text or "invalid load key" in text
        if not garbage and ("Weights only load failed" in text or "weights_only" in text):
            raise CheckpointError(
                f"{path}: refused to load: the file holds Python objects that only running code "
                f"could rebuild ({_unsafe_global(text)}). lit_opt checkpoints hold tensors and plain "
                f"data only, and lit_opt never runs code from a file: this one was not written by "
                f"lit_opt, or was altered") from None
        raise CheckpointError(f"{path}: not a checkpoint file (its bytes are not a PyTorch save)") from None
    except EOFError:
        raise CheckpointError(f"{path}: the file is truncated (it ends before the checkpoint does)") from None
    except (RuntimeError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        text = _first_line(str(exc))
        if "zip archive" in text or "central directory" in text or "file in archive" in text:
            raise CheckpointError(f"{path}: the file is truncated or corrupt (its checkpoint archive "
                                  f"is incomplete or damaged; a copy that stopped early?)") from None
        raise CheckpointError(f"{path}: not a checkpoint file PyTorch can read ({text})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint: it holds a {type(ckpt).__name__}, "
                              f"not a dict with state_dict and hyper_parameters")
    return ckpt


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:200]


def _unsafe_global(text: str) -> str:
    """What the file asked to call, from torch's weights_only message."""
    import re

    match = re.search(r"GLOBAL ([\w.]+)", text)
    return f"unpickling it would call {match.group(1)}" if match else "it holds objects other than tensors"


_LIGHTNING_INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"


def check_checkpoint(ckpt: dict, path: PathLike) -> dict:
    """The constructor arguments of a lit_opt checkpoint; CheckpointError if it is not one."""
    from lit_opt.module import CHECKPOINT_FORMAT, ClassifierModule

    path = Path(path)
    if "state_dict" not in ckpt:
        keys = ", ".join(sorted(map(str, ckpt))[:6]) or "none"
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict; its keys: {keys})")
    record = ckpt.get("lit_opt")
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: a checkpoint of another kind of model: it has no lit_opt record, "
                              f"so it was not written by lit_opt's ClassifierModule")
    fmt = record.get("format")
    if not isinstance(fmt, int) or fmt > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {fmt!r} written by lit_opt "
                              f"{record.get('version', '?')}; this lit_opt reads format <= "
                              f"{CHECKPOINT_FORMAT}: upgrade lit_opt")
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or not hparams:
        raise CheckpointError(f"{path}: the checkpoint does not record its model's hyperparameters "
                              f"(no hyper_parameters), so the model cannot be rebuilt from it")
    # Lightning's own key: the allow-listed instantiator LightningCLI records. Any other private
    # key (such as `_class_path`) would make LightningCLI build a class the file names.
    if hparams.get("_instantiator", _LIGHTNING_INSTANTIATOR) != _LIGHTNING_INSTANTIATOR:
        raise CheckpointError(f"{path}: refused: its hyperparameters name an instantiator "
                              f"({hparams['_instantiator']!r}), which would run code from the file")
    accepted = set(inspect.signature(ClassifierModule.__init__).parameters) - {"self"}
    unknown = sorted(k for k in hparams if k not in accepted and k != "_instantiator")
    if unknown:
        raise CheckpointError(f"{path}: its hyperparameters name settings this lit_opt does not know "
                              f"({', '.join(map(str, unknown))}); was it written by a newer lit_opt?")
    problem = plain_data_problem({k: v for k, v in hparams.items() if k != "_instantiator"})
    if problem:  # LightningCLI parses the hyperparameters as settings: no class may hide in them
        raise CheckpointError(f"{path}: refused: its hyperparameters are not plain settings ({problem})")
    kwargs = {k: v for k, v in hparams.items() if k in accepted}
    info = kwargs.get("data_info")
    if not isinstance(info, dict) or not {"input_shape", "class_names", "mean", "std"} <= set(info):
        raise CheckpointError(f"{path}: the checkpoint does not record its dataset (data_info with "
                              f"input_shape, class_names, mean, std), so pictures cannot be prepared for it")
    return kwargs


def _state_dict_problems(expected: dict, got: dict) -> list[str]:
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k} {tuple(got[k].shape)} (model has {tuple(expected[k].shape)})"
              for k in expected if k in got and hasattr(got[k], "shape")
              and tuple(got[k].shape) != tuple(expected[k].shape)]
    not_tensor = [k for k in expected if k in got and not hasattr(got[k], "shape")]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes),
                        ("not a tensor", not_tensor)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            problems.append(f"{label}: {', '.join(keys[:3])}{more}")
    return problems


def load(path: PathLike):
    """Rebuild the ClassifierModule a checkpoint holds, in eval mode on the CPU, without
    running any code from the file. CheckpointError (naming the file) when it cannot be."""
    from lit_opt.module import ClassifierModule

    ckpt = read_checkpoint(path)
    kwargs = check_checkpoint(ckpt, path)
    try:
        model = ClassifierModule(**kwargs)
    except Exception as exc:  # a ConfigError from validation, or a net that cannot be built
        raise CheckpointError(f"{path}: its hyperparameters do not describe a model this lit_opt "
                              f"can build ({_first_line(str(exc))})") from None
    state = ckpt["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: its state_dict is a {type(state).__name__}, not a dict of tensors")
    # Only the net's weights matter here; the metrics' running state (val_acc_best, ...) is
    # training progress, and a checkpoint from before a metric became persistent lacks it.
    state = {k[len("net."):]: v for k, v in state.items() if str(k).startswith("net.")}
    problems = _state_dict_problems(model.net.state_dict(), state)
    if problems:
        raise CheckpointError(f"{path}: the weights do not match the model its hyperparameters describe "
                              f"({model.hparams.net}): " + "; ".join(problems))
    try:
        model.net.load_state_dict(state, strict=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: the weights could not be loaded into the model "
                              f"({_first_line(str(exc))})") from None
    model.eval()
    model.requires_grad_(False)
    model.checkpoint_path = str(path)
    return model


def describe(model) -> str:
    """One line: net, dataset, classes (for a status bar or a CLI header)."""
    hp = model.hparams
    info = hp.data_info
    shape = "x".join(str(s) for s in info["input_shape"])
    return f"{hp.net} on {info.get('dataset', '?')} ({len(info['class_names'])} classes, input {shape})"


# --- classifying ---------------------------------------------------------------------------


def probabilities(model, image: Union[ImageLike, Preprocessed]) -> tuple[dict[str, float], Preprocessed]:
    """{class name: probability} (most probable first) and the preprocessed picture."""
    import torch

    pre = image if isinstance(image, Preprocessed) else preprocess(image, model)
    with torch.no_grad():
        logits = model(pre.tensor.to(model.device))
        probs = torch.softmax(logits.float(), dim=1)[0].cpu().tolist()
    ranked = sorted(zip(model.class_names, probs), key=lambda item: -item[1])
    return {name: float(p) for name, p in ranked}, pre


def classify(model, image: Union[ImageLike, Preprocessed]) -> dict[str, float]:
    """{class name: probability}, most probable first. `image`: a file path, PIL image, numpy
    array, or an already `preprocess`ed picture. EmptyImageError for a blank picture,
    ImageError for one that cannot be read."""
    return probabilities(model, image)[0]


# --- CLI -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lit_opt classify",
        description="Classify pictures with a trained checkpoint. Each picture is prepared the way "
                    "the model's dataset was (digits: the MNIST recipe; any size, colour or polarity).",
        epilog="exit status: 0 when at least one picture was classified, 1 when none could be, "
               "2 for a bad checkpoint or bad arguments")
    p.add_argument("--ckpt_path", required=True, help="a lit_opt checkpoint (e.g. checkpoints/RUN/best.ckpt)")
    p.add_argument("--json", action="store_true",
                   help='print a JSON list: {"image", "predictions": [{"label", "probability"}, ...]} '
                        'per picture, all classes, most probable first ({"image", "error"} when it fails)')
    p.add_argument("--top", type=int, default=3, help="classes shown per picture in text output (default 3)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="picture files (PNG, JPEG, ...)")
    return p


def classify_files(model, images: list[str]) -> list[dict]:
    """One result per picture: {"image", "predictions"} or {"image", "error"}."""
    results = []
    for image in images:
        try:
            probs = classify(model, image)
        except LitOptError as exc:
            results.append({"image": image, "error": str(exc)})
            continue
        results.append({"image": image, "predictions": [{"label": k, "probability": round(v, 6)}
                                                        for k, v in probs.items()]})
    return results


def _text(result: dict, top: int) -> str:
    if "error" in result:
        return f"{result['image']}: error: {result['error']}"
    preds = result["predictions"][:max(1, top)]
    first = f"{preds[0]['label']} ({100 * preds[0]['probability']:.1f}%)"
    rest = ", ".join(f"{p['label']} ({100 * p['probability']:.1f}%)" for p in preds[1:])
    return f"{result['image']}: {first}" + (f"   next: {rest}" if rest else "")


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        model = load(args.ckpt_path)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = classify_files(model, args.images)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(_text(r, args.top), file=sys.stderr if "error" in r else sys.stdout)
    return 0 if any("predictions" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
