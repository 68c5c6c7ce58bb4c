"""A study report's PNG figures, drawn from groups of runs (lit_opt.studies.results).

- curves: train loss, validation loss and accuracy per epoch, mean over seeds with a band of
  +- one std, one colour per optimizer or swept value (one row per dataset)
- metric_vs_value: a group metric (test accuracy, time per epoch) against the swept value,
  log axis for log-spaced values, diverged values marked
- lr_sensitivity: best validation accuracy (and, for a study tuned on its first seed, that
  seed's test accuracy) against the learning rate, per optimizer
- first_layer_weights: 8 first-layer weight images per swept value, at three values (seed 003's
  figure 7)

matplotlib is imported on first use, with the Agg backend (headless, no Qt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from lit_opt.studies.results import Group, numeric
from lit_opt.studies.spec import label_value, short_key

DIVERGED_STYLE = dict(marker="x", color="red", markersize=9, linestyle="none")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _colours(n: int, ordered: bool):
    plt = _pyplot()
    if ordered:  # swept numbers: a sequential map, so the order of the values reads off the colours
        cmap = plt.get_cmap("viridis")
        return [cmap(0.9 * i / max(n - 1, 1)) for i in range(n)]
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _label(group: Group, skip: Sequence[str] = ()) -> str:
    parts = [f"{short_key(k)}={label_value(v)}" for k, v in group.values.items()
             if k not in skip and k != "data.data_dir" and v is not None]
    return ", ".join(parts) or "all runs"


def _dataset(group: Group) -> str:
    name = group.values.get("data.name") or "data"
    if name == "image_folder" and group.values.get("data.data_dir"):
        return Path(str(group.values["data.data_dir"])).name.split(".")[0]
    return str(name)


def _rows(groups: list[Group], by: Optional[str]) -> list[tuple[str, list[Group]]]:
    if by is None:
        return [("", groups)]
    rows: dict[str, list[Group]] = {}
    for g in groups:
        rows.setdefault(_dataset(g) if by == "data.name" else label_value(g.values.get(by)), []).append(g)
    return list(rows.items())


def log_axis(values: Sequence[Optional[float]]) -> bool:
    """Log-spaced values: all positive and spanning at least two decades."""
    xs = [v for v in values if v is not None]
    return bool(xs) and min(xs) > 0 and max(xs) / min(xs) >= 100


def curves(groups: list[Group], path: Path, row_key: Optional[str] = None, title: str = "") -> Optional[Path]:
    """Train loss, validation loss and validation accuracy per epoch; mean +- std over seeds."""
    groups = [g for g in groups if g.finished]
    if not groups:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    rows = _rows(groups, row_key)
    panels = [("train/loss", "training loss (CE + L2)", True), ("val/loss", "validation loss", True),
              ("val/acc", "validation accuracy", False)]
    fig, axes = plt.subplots(len(rows), 3, figsize=(15, 3.8 * len(rows)), squeeze=False)
    for r, (row_name, row_groups) in enumerate(rows):
        ordered = len(row_groups[0].values) == 1 and numeric(next(iter(row_groups[0].values.values()))) is not None
        colours = _colours(len(row_groups), ordered)
        for c, (key, name, log) in enumerate(panels):
            ax = axes[r][c]
            for g, colour in zip(row_groups, colours):
                x, mean, std = g.curve(key)
                if not x:
                    continue
                ax.plot(x, mean, color=colour, marker="o" if len(x) < 12 else None, markersize=3,
                        label=f"{_label(g, [row_key] if row_key else [])} (n={len(g.finished)})")
                if any(s is not None for s in std):
                    lo = [m - (s or 0) for m, s in zip(mean, std)]
                    hi = [m + (s or 0) for m, s in zip(mean, std)]
                    ax.fill_between(x, lo, hi, color=colour, alpha=0.2, linewidth=0)
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{row_name}: {name}" if row_name else name, fontsize=10)
            ax.grid(alpha=0.3)
        if len(row_groups) > 5:  # many values: the legend beside the plots, not over the curves
            axes[r][2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        else:
            axes[r][2].legend(fontsize=7, loc="lower right")
    fig.suptitle(title or "per-epoch curves: mean over seeds, band = +- 1 std", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def metric_vs_value(groups: list[Group], key: Optional[str], metric: str, ylabel: str, path: Path,
                    line_key: Optional[str] = None, title: str = "") -> Optional[Path]:
    """`metric` (mean +- std over seeds) against the value of `key`, one line per `line_key` value.
    Values with only diverged runs are marked with a red x at the bottom of the axis."""
    if not any(g.finished for g in groups):
        return None
    plt = _pyplot()
    def value(g: Group) -> str:
        return label_value(g.values.get(key)) if key else g.label

    xs_num = [numeric(g.values.get(key)) if key else None for g in groups]
    categorical = any(x is None for x in xs_num)
    cats = list(dict.fromkeys(value(g) for g in groups)) if categorical else []
    lines: dict[str, list[Group]] = {}
    for g in groups:
        lines.setdefault(label_value(g.values.get(line_key)) if line_key else "", []).append(g)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colours = _colours(len(lines), False)
    diverged_x = []
    for (name, line), colour in zip(lines.items(), colours):
        pts = []
        for g in line:
            x = cats.index(value(g)) if categorical else numeric(g.values.get(key))
            mean, std = g.stat(metric)
            if mean is None:
                if g.diverged:
                    diverged_x.append(x)
                continue
            pts.append((x, mean, std or 0.0))
        if pts:
            label = f"{short_key(line_key)}={name}" if line_key else None
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], color=colour,
                        marker="o", capsize=3, label=label)
    if diverged_x:
        bottom = ax.get_ylim()[0]
        ax.plot(diverged_x, [bottom] * len(diverged_x), **DIVERGED_STYLE, label="diverged", clip_on=False)
    if categorical:
        ax.set_xticks(range(len(cats)), cats, rotation=30 if max(map(len, cats)) > 6 else 0, ha="right")
    elif log_axis(xs_num):
        ax.set_xscale("log")
    lists = key and not categorical and any(isinstance(g.values.get(key), list) for g in groups)
    ax.set_xlabel(f"{short_key(key)} (units in each layer)" if lists else short_key(key) if key else "")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if line_key or diverged_x:
        ax.legend(fontsize=8)
    ax.set_title(title or f"{ylabel} against {short_key(key) if key else 'group'} (mean +- std over seeds)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def lr_sensitivity(groups: list[Group], path: Path, lr_key: str = "model.lr", test: bool = False,
                   seed=None) -> Optional[Path]:
    """Best validation accuracy against the learning rate, one line per optimizer, one panel per
    dataset; the chosen learning rate is starred, diverged ones are red crosses. With `test`,
    each optimizer's test accuracy too (dashed, same colour). `seed`: the groups hold that
    seed's runs only (a study tuned on its first seed), said in the titles."""
    if not any(g.finished for g in groups) or not any(g.values.get(lr_key) is not None for g in groups):
        return None
    plt = _pyplot()
    by_data = "data.name" in groups[0].values and len({_dataset(g) for g in groups}) > 1
    panels = _rows(groups, "data.name" if by_data else None)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (panel, pgroups) in zip(axes[0], panels):
        lines: dict[str, list[Group]] = {}
        for g in pgroups:
            lines.setdefault(_label(g, [lr_key, "data.name"]), []).append(g)
        diverged = []
        for (name, line), colour in zip(lines.items(), _colours(len(lines), False)):
            pts = []
            for g in line:
                lr, (mean, std) = g.values.get(lr_key), g.stat("best_val_acc")
                if mean is None:
                    if g.diverged and lr is not None:
                        diverged.append(lr)
                    continue
                pts.append((lr, mean, std or 0.0, g.selected, g.stat("test/acc")))
            pts.sort(key=lambda p: p[0])
            if not pts:
                continue
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], color=colour,
                        marker="o", capsize=3, label=f"{name} (val)" if test else name)
            tested = [(p[0], *p[4]) for p in pts if p[4][0] is not None]
            if test and tested:
                ax.errorbar([t[0] for t in tested], [t[1] for t in tested], yerr=[t[2] or 0.0 for t in tested],
                            color=colour, marker="s", markersize=4, capsize=3, linestyle="--",
                            label=f"{name} (test)")
            for p in pts:
                if p[3] and len(pts) > 1:
                    ax.plot([p[0]], [p[1]], marker="*", color=colour, markersize=15, markeredgecolor="black")
        if diverged:
            ax.plot(diverged, [ax.get_ylim()[0]] * len(diverged), **DIVERGED_STYLE, label="diverged",
                    clip_on=False)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("accuracy (solid: best validation, dashed: test)" if test else "best validation accuracy")
        what = "lr sensitivity" + (f", seed {seed}" if seed is not None else "") + " (star: chosen)"
        ax.set_title(f"{panel}: {what}" if panel else what, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def first_layer_images(ckpt_path: Path):
    """The first Linear/Conv2d layer's weights of a checkpoint as images (K, H, W), read from its
    state dict (`torch.load(weights_only=True)`): no model is built, so checkpoints of older
    module versions work too."""

    from lit_opt.inference import read_checkpoint

    ckpt = read_checkpoint(ckpt_path)
    shape = ckpt["hyper_parameters"]["data_info"]["input_shape"]
    for key, w in ckpt["state_dict"].items():  # in registration order: the first weight is the first layer's
        if key.startswith("net.") and key.endswith(".weight") and w.dim() in (2, 4):
            w = w.float()
            if w.dim() == 4:  # conv filters, input channels averaged
                return w.mean(dim=1)
            c, h, width = shape
            if w.shape[1] == c * h * width:
                return w.view(w.shape[0], c, h, width).mean(dim=1)
            return None
    return None


def first_layer_weights(groups: list[Group], key: str, path: Path, per_value: int = 8) -> Optional[Path]:
    """`per_value` first-layer weight images (the same units, chosen at random once) from the
    best.ckpt of the first finished run at the smallest, middle and largest value of `key`."""
    with_runs = [g for g in groups if g.finished and (g.finished[0].path / "best.ckpt").is_file()]
    if len(with_runs) < 2:
        return None
    picks = [with_runs[i] for i in sorted({0, len(with_runs) // 2, len(with_runs) - 1})]
    rows = [(g, first_layer_images(g.finished[0].path / "best.ckpt")) for g in picks]
    if any(images is None for _, images in rows):
        return None
    import torch

    n_units = min(len(images) for _, images in rows)
    units = torch.randperm(n_units, generator=torch.Generator().manual_seed(0))[:per_value].tolist()
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), len(units), figsize=(1.2 * len(units), 1.45 * len(rows)), squeeze=False)
    for r, (g, images) in enumerate(rows):
        for c, unit in enumerate(units):
            ax = axes[r][c]
            ax.imshow(images[unit].numpy(), cmap="gray")  # each image on its own gray scale, as seed 003
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{short_key(key)}=\n{label_value(g.values.get(key))}", fontsize=8)
    fig.suptitle(f"first-layer weights (units {units}) at three values of {short_key(key)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def update_ratios(groups: list[Group], path: Path, max_panels: int = 6) -> Optional[Path]:
    """Each layer's update/weight ratio ||delta w|| / ||w|| against the step, one panel per
    group (its first finished run), log axis, the 1e-3 rule of thumb dashed; None when no run
    recorded the layer diagnostics (`diagnostics.every`)."""
    from lit_opt.run_files import read_steps

    panels = []
    for g in groups:
        if not g.finished:
            continue
        rows, elements = read_steps(g.finished[0].path)
        layers = elements.get("train/update_ratio")
        if layers:
            got = [(r["batches"], r["train/update_ratio"]) for r in rows if r.get("train/update_ratio")]
            panels.append((g, layers, got))
        if len(panels) == max_panels:
            break
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False, sharey=True)
    colours = _colours(max(len(p[1]) for p in panels), ordered=False)
    for ax, (g, layers, got) in zip(axes[0], panels):
        steps = [b for b, _ in got]
        for i, layer in enumerate(layers):
            values = [v[i] if v[i] is not None and v[i] > 0 else float("nan") for _, v in got]
            ax.plot(steps, values, color=colours[i], linewidth=1, label=layer)
        ax.axhline(1e-3, color="black", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_title(f"{_label(g)} ({g.finished[0].name})", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("||delta w|| / ||w|| per layer")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("update / weight ratio per layer (dashed: 1e-3)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
