import pytest
import torch

from vqcodec import hardware


@pytest.fixture
def fresh_cache():
    hardware.int8_matmul_fast.cache_clear()
    yield
    hardware.int8_matmul_fast.cache_clear()


def test_int8_products_are_chosen_only_when_faster_than_float32(fresh_cache, monkeypatch):
    seconds = iter([1.0, 2.0, 2.0, 1.0])  # int8 then float32, twice
    threads = []

    def timed(fn, repeats):
        threads.append(torch.get_num_threads())
        return next(seconds)

    monkeypatch.setattr(hardware, "_best_seconds", timed)
    before = torch.get_num_threads()
    assert hardware.int8_matmul_fast() is True
    hardware.int8_matmul_fast.cache_clear()
    assert hardware.int8_matmul_fast() is False
    assert threads == [1, 1, 1, 1] and torch.get_num_threads() == before  # timed as the prior runs


def test_no_int8_products_without_torch_int_mm(fresh_cache, monkeypatch):
    monkeypatch.delattr(torch, "_int_mm")
    assert hardware.int8_matmul_fast() is False


def test_the_benchmark_runs_on_this_cpu(fresh_cache):
    assert isinstance(hardware.int8_matmul_fast(), bool)
    assert isinstance(hardware.bf16_supported(torch.device("cpu")), bool)
