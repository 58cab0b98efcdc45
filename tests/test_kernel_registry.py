"""The kernel descriptions (lnlib.cuda.families) match the CUDA sources exactly, and everything that
names or launches a kernel derives from them: checked on the CPU, no compiler needed.

Kernel names are written by hand only in the tests of the parser itself (the first ones here).
"""

import re

import numpy as np
import pytest

from lnlib.cuda import families as F
from lnlib.cuda import kernels as K
from lnlib.cuda import versions

SNIPPET = """
// a comment with __global__ void not_a_kernel(int x) {
template <typename T, int VW, class U, bool FLAG = false, int BUFS = 2>
__global__ void LN_CLUSTER(C) __launch_bounds__(TPR * RPB)
k_one(const T* __restrict__ x, T *y,
      float* part, int M, float eps) {
    /* __global__ void also_not(int) {} */
}
template <typename T> __device__ float helper(const T* p) { return 0.f; }
__global__ void k_two(const float* part, int P) {}
"""


def test_the_parser_reads_template_parameters_and_arguments():
    found = F.parse_kernels(SNIPPET)
    assert list(found) == ["k_one", "k_two"]  # comments and __device__ functions are not kernels
    params, args = found["k_one"]
    assert [(p.name, p.type, p.default) for p in params] == [
        ("T", "typename", None), ("VW", "int", None), ("U", "typename", None), ("FLAG", "bool", False),
        ("BUFS", "int", 2)]
    assert [(a.type, a.name) for a in args] == [
        ("const T* __restrict__", "x"), ("T*", "y"), ("float*", "part"), ("int", "M"), ("float", "eps")]
    assert found["k_two"] == ((), (F.Arg("const float*", "part"), F.Arg("int", "P")))
    with pytest.raises(ValueError, match="twice"):
        F.parse_kernels(SNIPPET + "__global__ void k_two(int P) {}")


def test_a_change_on_one_side_only_is_found():
    one = F.Family.describe("k_one", "x", "typename T, int VW, class U, bool FLAG = false, int BUFS = 2",
                            "const T* __restrict__ x, T* y, float* part, int M, float eps")
    two = F.Family.describe("k_two", "x", "", "const float* part, int P")
    assert F.mismatches(SNIPPET, [one, two]) == []
    assert F.mismatches(SNIPPET, [one]) == ["k_two: in the source, not described"]
    assert F.mismatches(SNIPPET.replace("int BUFS = 2", "int BUFS = 1"), [one, two]) == [
        "k_one: template <typename T, int VW, typename U, bool FLAG = false, int BUFS = 1> in the source, "
        "<typename T, int VW, typename U, bool FLAG = false, int BUFS = 2> described"]
    swapped = SNIPPET.replace("int M, float eps", "float eps, int M")
    assert F.mismatches(swapped, [one, two])[0].startswith("k_one: arguments (const T* __restrict__ x, T* y, "
                                                           "float* part, float eps, int M) in the source")
    renamed = F.Family.describe("k_three", "x", "", "const float* part, int P")
    assert F.mismatches(SNIPPET, [one, renamed]) == ["k_two: in the source, not described",
                                                     "k_three: described, not in the source"]


@pytest.mark.parametrize("source", sorted(K.SOURCES))
def test_every_kernel_of_the_package_matches_its_description(source):
    described = [f for f in F.FAMILIES.values() if f.source == source]
    assert described
    assert F.mismatches(K.source(source), described) == []


def test_names_follow_the_description():
    # positions, spellings and defaults come from the parameters; nothing is typed per kernel
    fam = F.Family.describe("k", "x", "typename T, int N, bool B = false, int S = 1", "int D")
    assert fam.name(T="bfloat16", N=3) == "k<bf16_t, 3>"  # trailing defaults are not written
    assert fam.name(T="float32", N=3, S=2) == "k<float, 3, false, 2>"  # an earlier default is
    assert fam.name(T="double", N=3, B=True) == "k<double, 3, true>"
    with pytest.raises(ValueError, match=r"needs template arguments \['N'\]"):
        fam.name(T="float32")
    with pytest.raises(ValueError, match="no template parameter"):
        fam.name(T="float32", N=1, X=2)
    with pytest.raises(TypeError, match="must be an int"):
        fam.name(T="float32", N=True)
    with pytest.raises(TypeError, match="must be a bool"):
        fam.name(T="float32", N=1, B=1)
    assert F.Family.describe("plain", "x", "", "int D").name() == "plain"


def test_launch_arguments_follow_the_description():
    args = F.LN_COL_SUM.launch_args(out=None, D=8, P=3, part=1 << 40)
    assert [type(a) for a in args] == [np.uint64, np.int32, np.int32, np.uint64]
    assert [int(a) for a in args] == [1 << 40, 3, 8, 0]
    assert F.LN_COL_SUM.launch_args(1 << 40, 3, 8, None) == args  # by position, in the kernel's order
    device_array = object()  # a CuPy array goes as itself: CuPy passes its pointer
    assert F.LN_COL_SUM.launch_args(device_array, 3, 8, 0)[0] is device_array
    with pytest.raises(TypeError, match=r"needs the arguments \['out'\]"):
        F.LN_COL_SUM.launch_args(part=0, P=3, D=8)
    with pytest.raises(TypeError, match="unknown"):
        F.LN_COL_SUM.launch_args(part=0, P=3, D=8, out=0, eps=1.0)
    with pytest.raises(TypeError, match="given twice"):
        F.LN_COL_SUM.launch_args(0, 3, P=3, D=8, out=0)
    with pytest.raises(ValueError, match="32-bit int"):
        F.LN_COL_SUM.launch_args(part=0, P=2**31, D=8, out=0)
    eps = F.LN_FWD.launch_args(*range(8), 1e-5)[-1]
    assert type(eps) is np.float32


def test_every_instance_name_parses_back_to_its_family():
    for cc in (75, 90):
        for name in K.all_instances(cc):
            family, values = F.parse_name(name)
            assert family.source == "layernorm" and family.name(**values) == name
    for name in versions.instances():
        family, values = F.parse_name(name)
        assert family.source == "versions" and family.name(**values) == name
    with pytest.raises(ValueError, match="no kernel family"):
        F.parse_name("nope<1>")


def test_the_launchers_can_pass_one_argument_list_to_each_kind():
    # api.py builds one set of arguments per direction and passes it to whichever family runs
    for table in (K.FORWARD_FAMILY, K.BACKWARD_FAMILY):
        assert len({f.args for kind, f in table.items() if kind != "looped"}) == 1
    assert K.FORWARD_FAMILY["looped"].args == K.FORWARD_FAMILY["rows"].args
    # every template parameter of a layout's family is a RowConfig field, the dtype or the block
    fields = set(K.RowConfig.__dataclass_fields__) | {"T", "NT"}
    for table in (K.FORWARD_FAMILY, K.BACKWARD_FAMILY):
        for f in table.values():
            assert {p.name for p in f.params} <= fields, f.kernel
    assert set(F.FAMILIES) == {f.kernel for table in (K.FORWARD_FAMILY, K.BACKWARD_FAMILY) for f in table.values()} \
        | {"ln_col_sum", "ln_bwd_params_looped"} | {f.kernel for v in versions.VERSIONS.values() for f in v.kernels}


def test_the_versions_registry_is_the_only_list_of_versions():
    V = versions.VERSIONS
    assert versions.FORWARD + versions.BACKWARD == tuple(V)
    assert all(versions.SAVED_BY[k] in versions.FORWARD for k in versions.BACKWARD)
    assert versions.MAX_D == {k: v.max_D for k, v in V.items() if v.block_n}
    # each version's kernels are in the sections it names, and every kernel of versions.cu in one
    from lnlib.source import cuda_section

    path = K.SOURCES["versions"]
    text = path.read_text()
    begins = re.findall(r"^// BEGIN (\S+)$", text, flags=re.M)
    assert sorted(begins) == sorted(s for v in V.values() for s in v.sections)
    for v in V.values():
        shown = "".join(cuda_section(path, s) for s in v.sections)
        for f in v.kernels:
            assert re.search(rf"\b{f.kernel}\(", shown), (v.key, f.kernel)
            assert f.source == "versions"
    kernels = [f.kernel for v in V.values() for f in v.kernels]
    assert sorted(kernels) == sorted(F.parse_kernels(text)) and len(set(kernels)) == len(kernels)
    # the module docstring's table is printed from the registry (a doctest keeps them equal)
    assert all(v.adds in versions.__doc__ for v in V.values())
