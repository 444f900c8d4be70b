"""How fast does this CPU run the packaged tier's two vision networks, in each run-time?

The packaged tier's scoring is mostly NanoDet-m on frames and EfficientNet-Lite0 on crops, so
their speed on a CPU decides whether that CPU meets the tier's targets. This times each network,
in one process, on random inputs of the shapes the pipeline gives them (a 416 px frame; batches
of 32 crops at 160 px), in OpenVINO in the precision it picks for this CPU (bfloat16 where the
CPU has bfloat16 instructions: AMX, or AVX-512 BF16 as on AMD Zen 4), in OpenVINO float32 and in
ONNX Runtime (float32). Every run-time uses every CPU this process may run on. The exports are
made into the weights cache first if they are not there (`vlavad weights fetch` fetches the
weights).

With `--int8` it also times each network quantised to int8 (ONNX Runtime's static quantisation:
int8 weights per channel, uint8 activations, in QDQ form, which OpenVINO runs in int8 too). The
quantised models are calibrated on the same random inputs and kept in a temporary folder: this
times them and says nothing of what they would answer.

    python benchmarks/network_speed.py
    python benchmarks/network_speed.py --repeat 50 --int8
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlavad.describe import appearance  # noqa: E402
from vlavad.detect import nanodet  # noqa: E402
from vlavad.weights import onnx_models  # noqa: E402

CROPS = 32  # the appearance describer's batch


def cpu_name() -> str:
    """The CPU's model name and its bfloat16 instructions, from /proc/cpuinfo where there is one."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    bf16 = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]
    return f"{name} ({', '.join(bf16) if bf16 else 'no bfloat16 instructions'})"


def per_item_ms(session, inputs: dict[str, np.ndarray], items: int, repeat: int) -> float:
    """The median over `repeat` runs (after two to warm up) of one run's time per item, in ms."""
    for _ in range(2):
        session.run(inputs)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / items * 1000


def quantised_int8(model: bytes, inputs: dict[str, np.ndarray], folder: Path) -> bytes:
    """`model` with int8 weights and uint8 activations in QDQ form, calibrated on `inputs`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([inputs])

        def get_next(self):
            return next(self.batches, None)

    source, prepared, quantised = folder / "model.onnx", folder / "prepared.onnx", folder / "int8.onnx"
    source.write_bytes(model)
    quant_pre_process(str(source), str(prepared))
    with np.errstate(all="ignore"):  # channels that random inputs leave constant have a zero range
        quantize_static(
            str(prepared),
            str(quantised),
            Calibration(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return quantised.read_bytes()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of each (the table gives medians)")
    parser.add_argument("--int8", action="store_true", help="also time each network quantised to int8 (speed only)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    networks = []
    for title, spec, items, per in (
        ("NanoDet-m, 416 px frame", nanodet.onnx_export(416), 1, "frame"),
        (f"EfficientNet-Lite0, batch of {CROPS} crops at 160 px", appearance.onnx_export(160), CROPS, "crop"),
    ):
        model = onnx_models.exported(spec)
        if model is None:
            raise SystemExit(f"{spec.title} could not be exported here.")
        (name, shape, _), *_ = spec.inputs
        networks.append((title, model, {name: rng.random((items, *shape[1:]), dtype=np.float32)}, items, per))
    runtimes = (("OpenVINO, its choice", "openvino", False), ("OpenVINO, float32", "openvino", True), ("ONNX Runtime, float32", "onnxruntime", True))
    print(f"{cpu_name()}, {onnx_models.cpu_threads()} CPUs; median of {args.repeat} runs\n")
    print("| network | run-time | precision | ms per item |")
    print("| --- | --- | --- | ---: |")
    for title, model, inputs, items, per in networks:
        for label, runtime, exact in runtimes:
            session = onnx_models.make_session(model, runtime, exact=exact)
            print(f"| {title} | {label} | {session.label} | {per_item_ms(session, inputs, items, args.repeat):.2f} per {per} |", flush=True)
        if args.int8:
            with tempfile.TemporaryDirectory(prefix="vlavad-int8-") as folder:
                int8 = quantised_int8(model, inputs, Path(folder))
            for label, runtime in (("OpenVINO, int8 (QDQ)", "openvino"), ("ONNX Runtime, int8 (QDQ)", "onnxruntime")):
                session = onnx_models.make_session(int8, runtime, exact=False)
                print(f"| {title} | {label} | int8 | {per_item_ms(session, inputs, items, args.repeat):.2f} per {per} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
