"""The app's "Find lr…": Lightning's range test on the form's settings in the background, its
plot in a dialog, and "Use suggested lr" filling the form; no run folder is left."""

from __future__ import annotations

import numpy as np

from tests.gui.conftest import small_config


def test_find_lr_plots_the_range_test_and_fills_the_form(real_data, tmp_path, make_window, qtbot):
    root = tmp_path / "runs"
    window = make_window(root, small_config(real_data, root, optimizer="adam", batch_size=50))
    window.find_lr(num_training=20)
    assert not window.start_button.isEnabled() and not window.lr_find_button.isEnabled()
    qtbot.waitUntil(lambda: window._lr_thread is None, timeout=120_000)
    dialog = window.lr_dialog
    assert dialog is not None, window.message.text()
    result = dialog.result
    x, y = dialog.curve.getData()
    np.testing.assert_allclose(10 ** x, result["lr"])  # a log axis holds log10 of the rate
    np.testing.assert_allclose(y, result["loss"])
    s = result["suggestion"]
    assert result["lr"][0] < s < result["lr"][-1]
    dialog.use_button.click()
    assert window.form.to_config()["model"]["lr"] == float(f"{s:.3g}")
    assert window.start_button.isEnabled()
    assert not root.exists() or not any(root.iterdir())  # nothing saved
