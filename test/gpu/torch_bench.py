"""GPU suite, the PyTorch side of the bandwidth step (run on the GPU machine by gpu-suite.sh).

Same shapes as bench.cu, timed the same way (CUDA events after warm-ups, median of repeats):
- a device-to-device copy (bytes read + written), to compare runs;
- decode attention at Llama-3.1-8B shapes (32 query heads, 8 KV heads, head dim 128, bf16), one query row per
  sequence at the last position of context L, for batch 32/64/128/256 x context 8K/32K:
  scaled_dot_product_attention (enable_gqa) and flex_attention (compiled) with a causal mask and with a
  StreamingLLM sink + window mask (the default deployment's draft: sink 4, window 508);
- torch.matmul (cuBLAS) at the model's GEMM shapes, bf16 activations x bf16 weights.
Points that do not fit in memory or fail are recorded with their error; a time budget (--budget seconds)
skips what is left once spent, and says so.

usage: python3 torch_bench.py --json OUT [--quick] [--budget S] [--sink 4 --window 508]
"""

import argparse
import json
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--budget", type=float, default=150.0)
    ap.add_argument("--sink", type=int, default=4)
    ap.add_argument("--window", type=int, default=508)
    ap.add_argument("--gemms", default="", help="name:N:K,... the model's GEMM shapes")
    a = ap.parse_args()
    start = time.time()
    results = []
    out = {"results": results}

    def save() -> None:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)

    try:
        import torch
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        out["error"] = f"torch import failed: {e}"
        save()
        print(out["error"])
        return 1
    if not torch.cuda.is_available():
        out["error"] = "torch sees no CUDA device"
        save()
        print(out["error"])
        return 1
    out["torch"] = torch.__version__
    out["device"] = torch.cuda.get_device_name()
    reps = 5 if a.quick else 15

    def time_ms(fn) -> float:
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for s, e in ev:
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        ms = sorted(s.elapsed_time(e) for s, e in ev)
        return ms[len(ms) // 2]

    def over_budget() -> bool:
        return time.time() - start > a.budget

    n = 2 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda").fill_(0x5A)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src))
    copy_gbps = 2 * n / (ms * 1e-3) / 1e9
    out["copy_gbps"] = copy_gbps
    print(f"torch copy: {copy_gbps:.0f} GB/s", flush=True)
    del src, dst

    # GEMMs first: seconds, and the comparison the GEMM targets need, before flex_attention's compiles.
    shapes = [s.split(":") for s in a.gemms.split(",") if s]
    for name, n_s, k_s in shapes:
        N, K = int(n_s), int(k_s)
        copies = max(1, (512 << 20) // (N * K * 2) + 1)
        try:
            ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
        except Exception as e:  # noqa: BLE001
            results.append({"kind": "gemm", "name": name, "error": str(e).splitlines()[0][:300]})
            continue
        for M in ([1, 64] if a.quick else [1, 32, 64, 128, 256]):
            point = {"kind": "gemm", "name": name, "rows": M, "n": N, "k": K}
            results.append(point)
            if over_budget():
                point["skipped"] = "time budget spent"
                continue
            x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
            it = [0]

            def mm():
                w = ws[it[0] % copies]
                it[0] += 1
                return torch.matmul(x, w.t())

            ms = time_ms(mm)
            point["matmul_ms"] = ms
            point["matmul_gbps"] = (N * K * 2 + M * K * 2 + M * N * 2) / (ms * 1e-3) / 1e9
        del ws
        torch.cuda.empty_cache()
        print(f"torch matmul {name}: done", flush=True)
        save()

    from torch.nn.functional import scaled_dot_product_attention as sdpa

    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        flex = torch.compile(flex_attention)
    except Exception as e:  # noqa: BLE001
        flex = None
        out["flex_error"] = str(e)

    H, KH, D = 32, 8, 128
    batches = [32, 64] if a.quick else [32, 64, 128, 256]
    contexts = [8192] if a.quick else [8192, 32768]
    for L in contexts:
        for B in batches:
            point = {"kind": "attention", "batch": B, "context": L}
            results.append(point)
            if over_budget():
                point["skipped"] = "time budget spent"
                continue
            kv_bytes = B * L * KH * D * 2 * 2
            try:
                free, _ = torch.cuda.mem_get_info()
                if kv_bytes * 1.3 + (4 << 30) > free:
                    point["skipped"] = "does not fit in device memory"
                    continue
                g = torch.Generator(device="cuda").manual_seed(B * 100003 + L)
                q = torch.randn(B, H, 1, D, device="cuda", dtype=torch.bfloat16, generator=g)
                k = torch.randn(B, KH, L, D, device="cuda", dtype=torch.bfloat16, generator=g)
                v = torch.randn(B, KH, L, D, device="cuda", dtype=torch.bfloat16, generator=g)
                # Decode: the query is the last position, so causal attention sees every key.
                ms = time_ms(lambda: sdpa(q, k, v, enable_gqa=True))
                point["sdpa_ms"] = ms
                point["sdpa_gbps"] = kv_bytes / (ms * 1e-3) / 1e9
                if flex is not None:
                    qpos = L - 1
                    sink, window = a.sink, a.window

                    def causal(b, h, qi, kv):
                        return kv <= qpos + qi

                    def sink_window(b, h, qi, kv):
                        return (kv <= qpos + qi) & ((kv < sink) | (qpos + qi - kv < window))

                    for name, mod, vis in (("causal", causal, L), ("sink_window", sink_window, min(L, sink + window))):
                        if over_budget():
                            point[f"flex_{name}_skipped"] = "time budget spent"
                            continue
                        try:
                            bm = create_block_mask(mod, B=None, H=None, Q_LEN=1, KV_LEN=L, device="cuda")
                            ms = time_ms(lambda: flex(q, k, v, block_mask=bm, enable_gqa=True))
                            point[f"flex_{name}_ms"] = ms
                            point[f"flex_{name}_gbps"] = B * vis * KH * D * 2 * 2 / (ms * 1e-3) / 1e9
                        except Exception as e:  # noqa: BLE001
                            point[f"flex_{name}_error"] = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
                del q, k, v
                torch.cuda.empty_cache()
                print(f"torch attention B {B} L {L}: " + ", ".join(f"{key} {val:.3f}" for key, val in point.items() if key.endswith("_ms")), flush=True)
            except Exception as e:  # noqa: BLE001
                point["error"] = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
                torch.cuda.empty_cache()
            save()

    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
