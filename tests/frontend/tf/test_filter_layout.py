"""TF's (kh, kw, I, O) filters become fc's (O, I, kh, kw) by a tiled copy: the same values as
numpy's transpose, for blocks of taps and 1x1 filters that span several tiles and ragged edges."""

import numpy as np
import pytest

from fc.frontend.tf.ops_nn import _oihw


@pytest.mark.parametrize("shape", [(3, 3, 5, 7), (1, 1, 300, 257), (7, 7, 3, 64), (1, 3, 4, 2),
                                   (1, 1, 1, 1), (1, 1, 129, 2), (3, 3, 70, 150), (5, 1, 33, 9)])
def test_oihw_equals_transpose(shape):
    f = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = _oihw(f, tile=64, tap_tile=32)
    assert got.flags.c_contiguous and got.dtype == f.dtype
    np.testing.assert_array_equal(got, f.transpose(3, 2, 0, 1))
