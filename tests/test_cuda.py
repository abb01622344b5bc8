"""CUDA paths: the same partitions on the GPU as on the CPU (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

import reluscope as rs
from reluscope.nets import cnn, mlp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_plane_on_cuda_equals_cpu():
    model = mlp([2, 32, 32, 3], seed=0)
    cpu = rs.plane(model)
    gpu = rs.plane(model.cuda())
    assert gpu.vertices.is_cuda
    assert gpu.num_regions == cpu.num_regions
    assert torch.allclose(gpu.areas.sum().cpu(), cpu.areas.sum())
    assert torch.equal(gpu.patterns().cpu().sum(0), cpu.patterns().sum(0))
    segs, _ = gpu.decision_boundary()
    assert len(segs) == len(cpu.decision_boundary()[0])


def test_line_and_local_affine_on_cuda():
    model = cnn(in_channels=1, image_size=8, channels=(2, 3), seed=0).cuda()
    start, end = torch.zeros(1, 8, 8), torch.ones(1, 8, 8)
    gpu = rs.line(model, start.cuda(), end.cuda())
    cpu = rs.line(model.cpu(), start, end)
    assert gpu.num_pieces == cpu.num_pieces
    net = rs.trace(model.cuda(), (1, 8, 8))
    jac, const = net.local_affine(torch.randn(4, 1, 8, 8, device="cuda"))
    assert jac.is_cuda and const.shape == (4, 10)
