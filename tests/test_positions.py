"""Position encodings against direct definitions: the relative shift vs an O(T^2) loop, rotary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hydra_jax.model import positions


@pytest.mark.parametrize("shift", ["gather", "full_pass"])
def test_relative_logits_match_a_direct_loop_over_query_key_pairs(shift):
  rng = np.random.RandomState(0)
  B, T, H, E, D = 2, 5, 3, 4, 6
  q = rng.randn(B, T, H, E).astype(np.float32)
  w_r = rng.randn(D, H, E).astype(np.float32)
  bias_v = rng.randn(H, E).astype(np.float32)
  pos = np.broadcast_to(np.arange(T), (B, T))
  fast = np.asarray(positions.relative_logits(q, pos, pos, w_r, bias_v, max_offset=T)
                    if shift == "gather" else positions.full_pass_relative_logits(q, w_r, bias_v))
  r = np.asarray(positions.sinusoid(jnp.arange(T), D))                 # [T, D]
  for b in range(B):
    for h in range(H):
      for i in range(T):
        for j in range(i + 1):
          expected = (q[b, i, h] + bias_v[h]) @ (r[i - j] @ w_r[:, h])
          np.testing.assert_allclose(fast[b, h, i, j], expected, rtol=1e-5, atol=1e-5)


def test_relative_logits_for_one_query_against_cached_keys():
  rng = np.random.RandomState(1)
  T, H, E, D = 6, 2, 4, 8
  q = rng.randn(1, T, H, E).astype(np.float32)
  w_r, bias_v = rng.randn(D, H, E).astype(np.float32), rng.randn(H, E).astype(np.float32)
  pos = np.arange(T)[None]
  full = positions.relative_logits(q, pos, pos, w_r, bias_v, max_offset=T)
  one = positions.relative_logits(q[:, 4:5], np.array([[4]]), pos, w_r, bias_v, max_offset=T)
  np.testing.assert_allclose(one[:, :, 0, :5], full[:, :, 4, :5], rtol=1e-5)


def test_sinusoid_layout():
  r = np.asarray(positions.sinusoid(jnp.array([0, 3]), 4))
  np.testing.assert_allclose(r[0], [0, 0, 1, 1])
  np.testing.assert_allclose(r[1], [np.sin(3), np.sin(3 / 100), np.cos(3), np.cos(3 / 100)], rtol=1e-6)


def test_rotary_scores_depend_only_on_the_offset_and_preserve_norms():
  rng = np.random.RandomState(2)
  q, k = rng.randn(1, 1, 1, 8).astype(np.float32), rng.randn(1, 1, 1, 8).astype(np.float32)
  rot = lambda x, p: np.asarray(positions.apply_rotary(x, np.array([[p]]), 8, 10000.0))
  score = lambda i, j: float((rot(q, i) * rot(k, j)).sum())
  np.testing.assert_allclose(score(5, 2), score(13, 10), rtol=1e-4)
  assert abs(score(5, 2) - score(5, 4)) > 1e-3
  np.testing.assert_allclose(np.linalg.norm(rot(q, 7)), np.linalg.norm(q), rtol=1e-5)


def test_partial_rotary_leaves_the_other_features_alone():
  x = np.random.RandomState(3).randn(1, 2, 1, 8).astype(np.float32)
  out = np.asarray(positions.apply_rotary(x, np.array([[0, 3]]), 4, 10000.0))
  np.testing.assert_array_equal(out[..., 4:], x[..., 4:])
  np.testing.assert_allclose(out[0, 0], x[0, 0], rtol=1e-6)             # position 0: no rotation
  # rotate-half layout: features (0, 2) and (1, 3) form the rotated pairs
  angle = 3.0
  np.testing.assert_allclose(out[0, 1, 0, 0], x[0, 1, 0, 0] * np.cos(angle) - x[0, 1, 0, 2] * np.sin(angle), rtol=1e-5)
