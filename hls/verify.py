"""Check a generated hls4ml project's C++ types against the model description.

hls4ml fills any precision it is not told about with a default (``ap_fixed<16,6>``, tables
``ap_fixed<18,8>`` of 1024 entries) without a word. This module reads what the C++ compiler
will actually see - ``firmware/defines.h``, ``firmware/parameters.h`` and the top function in
``firmware/<project>.cpp`` - and follows each layer call to its config struct, the dense-product
configs, the activation-table configs, its input and output types, so that every type a kernel
uses is compared with the description. Any typedef left over in ``defines.h`` that no check
used is also an error (except hls4ml's unused 1-bit ``layerN_index`` types of uncompressed
dense products).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from qlstm.description import ModelDescription
from qlstm.errors import QlstmError
from qlstm.fixedpoint import FixedType

from .graph import INPUT_NAME, PROJECT_NAME, expected_layer_types, head_layers, parse_typedefs, rnn_name

_STRUCT_RE = re.compile(r"struct\s+(?P<name>\w+)\s*:\s*nnet::(?P<base>\w+)\s*\{(?P<body>.*?)\n\};", re.DOTALL)
_CONST_RE = re.compile(r"static\s+const\s+(?:unsigned|bool|int)\s+(?P<name>\w+)\s*=\s*(?P<value>[^;]+);")
_CALL_RE = re.compile(
    r"nnet::(?P<fn>\w+)<(?P<args>[^>]*(?:<[^>]*>[^>]*)*)>\((?P<params>[^)]*)\);\s*//\s*(?P<layer>\w+)"
)
_ARRAY_RE = re.compile(r"^nnet::array<\s*(?P<inner>.+?)\s*,\s*[\d*\s]+>$")
_INDEX_RE = re.compile(r"^layer\d+_index$")


class ProjectTypeError(QlstmError):
    """A generated type differs from the description (a leaked hls4ml default or a bug)."""


def _structs(text: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in _STRUCT_RE.finditer(text):
        body = m["body"]
        out[m["name"]] = {
            "base": m["base"],
            "typedefs": parse_typedefs(body),
            "consts": {c["name"]: c["value"].strip() for c in _CONST_RE.finditer(body)},
        }
    return out


def _element(type_text: str) -> str:
    """``nnet::array<T, n>`` (io_stream packing) -> ``T``."""
    m = _ARRAY_RE.match(type_text)
    return m["inner"] if m else type_text


class _Checker:
    def __init__(self, project_dir: Path) -> None:
        fw = Path(project_dir) / "firmware"
        try:
            self.defines = parse_typedefs((fw / "defines.h").read_text())
            self.params = _structs((fw / "parameters.h").read_text())
            self.top = (fw / f"{PROJECT_NAME}.cpp").read_text()
        except FileNotFoundError as exc:
            raise ProjectTypeError(
                f"{project_dir}: not a complete hls4ml project ({exc.filename} missing)"
            ) from None
        self.used: set[str] = set()
        self.errors: list[str] = []
        self.checked: dict[str, str] = {}

    def resolve(self, name: str) -> FixedType | None:
        if name not in self.defines:
            self.errors.append(f"type {name} is not defined in defines.h")
            return None
        self.used.add(name)
        return FixedType.from_ap(_element(self.defines[name]))

    def expect(self, where: str, type_name: str, want: FixedType) -> None:
        got = self.resolve(type_name)
        self.checked[where] = type_name
        if got is not None and got != want:
            self.errors.append(
                f"{where}: {type_name} is {got.describe()}, description says {want.describe()}"
            )

    def struct(self, name: str) -> dict[str, Any]:
        if name not in self.params:
            self.errors.append(f"config struct {name} missing from parameters.h")
            return {"base": "", "typedefs": {}, "consts": {}}
        return self.params[name]

    def member(self, where: str, struct_name: str, member: str, want: FixedType) -> None:
        td = self.struct(struct_name)["typedefs"]
        if member not in td:
            self.errors.append(f"{where}: {struct_name} has no typedef {member}")
            return
        self.expect(where, td[member], want)

    def const(self, where: str, struct_name: str, name: str, want: int) -> None:
        got = self.struct(struct_name)["consts"].get(name)
        self.checked[where] = f"{struct_name}::{name}"
        if got is None or int(got) != want:
            self.errors.append(f"{where}: {struct_name}::{name} is {got}, description says {want}")


def check_project_types(project_dir: Path, desc: ModelDescription) -> dict[str, str]:
    """Compare every C++ type of the project with ``desc``; return ``{quantization point: C++ name}``.

    Raises :class:`ProjectTypeError` listing every mismatch.
    """
    c = _Checker(project_dir)
    want = expected_layer_types(desc)
    calls = {m["layer"]: m for m in _CALL_RE.finditer(c.top)}

    top_sig = re.search(rf"void\s+{PROJECT_NAME}\s*\((?P<sig>[^)]*)\)", c.top)
    in_type = re.search(r"(\w+)\s+\w+\s*\[", top_sig["sig"]) if top_sig else None
    in_type = in_type or (re.search(r"hls::stream<(\w+)>", top_sig["sig"]) if top_sig else None)
    if in_type is None:
        c.errors.append(f"cannot find the input of the top function {PROJECT_NAME}()")
    else:
        c.expect("input", in_type.group(1), want[INPUT_NAME]["result"])

    prev = want[INPUT_NAME]["result"]
    n_layers = len(desc.architecture.layers)
    for i, layer in enumerate(desc.architecture.layers):
        name = rnn_name(i)
        w = want[name]
        call = calls.get(name)
        if call is None:
            c.errors.append(f"layer {name} is not called in {PROJECT_NAME}.cpp")
            continue
        data_t, res_t, cfg = (a.strip() for a in call["args"].split(","))
        if call["fn"] != f"{layer.cell}_stack":
            c.errors.append(f"{name}: calls nnet::{call['fn']}, expected nnet::{layer.cell}_stack")
        c.expect(f"{name}.input", data_t, prev)
        c.expect(f"{name}.state", res_t, w["result"])
        for member, role in (
            ("accum_t", "accum"),
            ("weight_t", "weight"),
            ("recurrent_weight_t", "recurrent_weight"),
            ("bias_t", "bias"),
            ("recurrent_bias_t", "recurrent_bias"),
        ):
            c.member(f"{name}.{role}", cfg, member, w[role])
        s = c.struct(cfg)
        mult1, mult2 = s["typedefs"].get("mult_config1"), s["typedefs"].get("mult_config2")
        for mult, (wrole, brole) in (
            (mult1, ("weight", "bias")),
            (mult2, ("recurrent_weight", "recurrent_bias")),
        ):
            if mult is None:
                c.errors.append(f"{name}: {cfg} lacks a dense-product config")
                continue
            c.member(f"{name}.{wrole} ({mult})", mult, "weight_t", w[wrole])
            c.member(f"{name}.{brole} ({mult})", mult, "bias_t", w[brole])
            c.member(f"{name}.accum ({mult})", mult, "accum_t", w["accum"])
        table = desc.quantization.layers[i].table  # type: ignore[union-attr]
        for act in ("ACT_CONFIG_" + layer.cell.upper(), "ACT_CONFIG_T"):
            act_cfg = s["typedefs"].get(act)
            if act_cfg is None:
                c.errors.append(f"{name}: {cfg} lacks {act}")
                continue
            c.member(f"{name}.table ({act_cfg})", act_cfg, "table_t", table.type)
            c.const(f"{name}.table_size ({act_cfg})", act_cfg, "table_size", table.size)
        seq_out = desc.architecture.history if i != n_layers - 1 else 1
        c.const(f"{name}.n_sequence_out", cfg, "n_sequence_out", seq_out)
        prev = w["result"]

    for (nm, dname, act), dq in zip(head_layers(desc), desc.quantization.head, strict=True):  # type: ignore[union-attr]
        call = calls.get(dname)
        if call is None:
            c.errors.append(f"layer {dname} is not called in {PROJECT_NAME}.cpp")
            continue
        data_t, res_t, cfg = (a.strip() for a in call["args"].split(","))
        w = want[dname]
        c.expect(f"{dname}.input", data_t, prev)
        c.expect(f"{dname}.result", res_t, w["result"])
        for member, role in (("accum_t", "accum"), ("weight_t", "weight"), ("bias_t", "bias")):
            c.member(f"{dname}.{role}", cfg, member, w[role])
        prev = w["result"]
        if act == "linear":
            continue
        call = calls.get(nm)
        if call is None:
            c.errors.append(f"layer {nm} ({act}) is not called in {PROJECT_NAME}.cpp")
            continue
        if call["fn"] != act:
            c.errors.append(f"{nm}: calls nnet::{call['fn']}, expected nnet::{act}")
        data_t, res_t, cfg = (a.strip() for a in call["args"].split(","))
        c.expect(f"{nm}.input", data_t, prev)
        c.expect(f"{nm}.result", res_t, want[nm]["result"])
        if dq.table is not None:
            c.member(f"{nm}.table", cfg, "table_t", dq.table.type)
            c.const(f"{nm}.table_size", cfg, "table_size", dq.table.size)
        elif (td := c.struct(cfg)["typedefs"].get("table_t")) is not None:
            c.used.add(td)  # hls4ml's activation config always names a table type; relu never reads it
            c.checked[f"{nm}.table (unused by {act})"] = td
        prev = want[nm]["result"]

    for tname, ttext in c.defines.items():
        if tname in c.used:
            continue
        if _INDEX_RE.match(tname) and ttext == "ap_uint<1>":
            continue  # index type of compressed dense products; unused here
        c.errors.append(f"defines.h has {tname} = {ttext}, which no quantization point accounts for")
    if c.errors:
        raise ProjectTypeError(
            f"{project_dir}: generated types differ from the description: " + "; ".join(c.errors)
        )
    return c.checked
