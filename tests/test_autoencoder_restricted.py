"""The decoder through the dependency cone of a few outputs (hyper-reduction) against the full
decoder kernels."""

from __future__ import annotations

import numpy as np
import pytest
from test_autoencoder_kernels import CASES, _decoder

from autoencoder import kernels as K
from autoencoder.export import export_network
from autoencoder.restricted import cone_cost, cone_decode, cone_plan


def _cone(meta, data, pix, z, lo, rng):
    plan = cone_plan(meta, data, pix)
    return plan, cone_decode(plan.layers, plan.groups, plan.index, plan.weights, plan.out_pos,
                             z, lo, rng)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_cone_equals_the_full_decoders_rows(case):
    p, feat, convs = CASES[case]
    meta, data = export_network(_decoder(p, feat, convs, case))
    n = int(meta[-1, 5] * meta[-1, 6] * meta[-1, 7])
    rng = np.random.default_rng(case)
    z = rng.standard_normal(p)
    g, J = K.decode_jacobian_kernel(meta, data, z, np.zeros(n), np.ones(n), np.arange(n))
    for size in (1, max(2, n // 10), n):
        pix = rng.choice(n, size, replace=False)
        if size > 2:
            pix[-1] = pix[0]  # a repeated row is evaluated twice, identically
        lo, scale = rng.standard_normal(size), rng.uniform(0.5, 2.0, size)
        plan, (gr, Jr) = _cone(meta, data, pix, z, lo, scale)
        assert np.allclose(gr, lo + scale * g[pix], rtol=0, atol=1e-13 * np.abs(g).max())
        assert np.allclose(Jr, scale[:, None] * J[pix], rtol=0, atol=1e-13 * np.abs(J).max())
        cost = cone_cost(plan)
        assert 0 < cost["macs"] <= cost["full_macs"]
        if size == n:  # every output: the cone is the whole network but for units that
            # reach no output (e.g. a dense unit whose pixel no kernel tap maps inside)
            assert cost["macs"] > 0.95 * cost["full_macs"]


def test_cone_of_one_output_is_small_on_a_large_image():
    # 64 x 64 output from 4 x 4: one output pixel depends on a few pixels per layer
    p, feat = 3, (4, 4, 8)
    convs = [(8, 5, 2, "same", "elu"), (8, 5, 2, "same", "elu"), (4, 5, 2, "same", "elu"),
             (2, 5, 2, "same", "linear")]
    meta, data = export_network(_decoder(p, feat, convs, 7))
    plan, _ = _cone(meta, data, np.array([64 * 64 * 2 // 2 + 11]), np.zeros(p),
                    np.zeros(1), np.ones(1))
    assert cone_cost(plan)["fraction"] < 0.05
    assert plan.cone_sizes[-1] == 2  # the requested pixel's two channels
