// The one place where every emseg operator's schema is declared. Kernels register per backend in
// csrc/<family>/<family>_{cpu.cpp,cuda.cu}; fake (meta) kernels live in emseg/ops.py.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing emseg._C only has to run the static registrations below; the module has no functions.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(emseg, m) {
  // ---- E-step (csrc/estep) ----
  m.def("em_fixed(Tensor scores, Tensor present, float fg_bias=5.0, float bg_bias=3.0, "
        "bool suppress_absent=False) -> Tensor");
  m.def("em_adapt(Tensor scores, Tensor present, float fg_portion=0.2, float bg_portion=0.4, "
        "int max_iter=100000) -> (Tensor, Tensor)");
  // ---- boxes (csrc/boxes) ----
  m.def("boxes_to_labels(Tensor boxes, int height, int width, int fill=0) -> Tensor");
  m.def("bbox_em_fixed(Tensor scores, Tensor boxes, float fg_bias=5.0, float bg_bias=3.0, "
        "bool suppress_absent=False) -> Tensor");
  // ---- permutohedral lattice (csrc/lattice) and dense CRF (csrc/crf) ----
  m.def("permutohedral_filter(Tensor values, Tensor features, bool normalize=True) -> Tensor");
  m.def("dense_crf(Tensor unary, Tensor image, Tensor compat, float[] pos_std, float[] bi_std, "
        "int iterations=10, Tensor? sizes=None, bool logits=False) -> Tensor");
}
