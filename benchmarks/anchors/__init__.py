"""The anchor scripts: published speed recipes re-typed as plain PyTorch, importable by
benchmarks/anchor_speed.py (which times each against its lit_opt config) and by
tests/test_anchors.py (which checks both compute the same losses)."""
