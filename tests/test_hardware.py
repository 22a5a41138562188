import pytest
import torch

from vqcodec import hardware


@pytest.fixture
def fresh_cache():
    hardware.int8_matmul_fast.cache_clear()
    hardware.bf16_supported.cache_clear()
    yield
    hardware.int8_matmul_fast.cache_clear()
    hardware.bf16_supported.cache_clear()


def cpu_flags(monkeypatch, vnni: bool, amx: bool = False) -> None:
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: vnni, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)


def test_int8_products_are_chosen_only_when_faster_than_float32(fresh_cache, monkeypatch):
    cpu_flags(monkeypatch, vnni=False)
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


@pytest.mark.parametrize("vnni, amx", [(True, False), (False, True)])
def test_a_cpu_with_vnni_or_amx_takes_int8_without_a_benchmark(fresh_cache, monkeypatch, vnni, amx):
    cpu_flags(monkeypatch, vnni, amx)
    monkeypatch.setattr(hardware, "_best_seconds", lambda fn, repeats: pytest.fail("benchmarked"))
    assert hardware.int8_matmul_fast() is True


def test_no_int8_products_without_torch_int_mm(fresh_cache, monkeypatch):
    monkeypatch.delattr(torch, "_int_mm")
    assert hardware.int8_matmul_fast() is False


def test_the_benchmark_runs_on_this_cpu(fresh_cache):
    assert isinstance(hardware.int8_matmul_fast(), bool)
    assert isinstance(hardware.bf16_supported(torch.device("cpu")), bool)


@pytest.mark.parametrize("avx512_bf16", [False, True])
@pytest.mark.parametrize("amx", [False, True])
def test_bf16_only_where_the_cpu_has_bf16_units(fresh_cache, monkeypatch, avx512_bf16, amx):
    # plain AVX-512 is not enough: oneDNN emulates bfloat16 there, 3-4x slower than float32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert hardware.bf16_supported(torch.device("cpu")) is (avx512_bf16 or amx)


def test_no_bf16_where_torch_cannot_tell(fresh_cache, monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert hardware.bf16_supported(torch.device("cpu")) is False


def test_the_machine_record_names_the_cpu_and_the_paths_taken(fresh_cache):
    record = hardware.machine()
    assert record["cpu"] and record["cores"] >= 1 and record["torch"] == torch.__version__
    assert record["bf16_networks"] is hardware.bf16_supported(torch.device("cpu"))
    assert record["int8_prior"] is hardware.int8_matmul_fast()
