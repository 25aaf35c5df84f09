// The one place where every emseg operator's schema is declared. Kernels register per backend in
// csrc/<family>/<family>_{cpu,cuda}.cpp; fake (meta) kernels live in emseg/ops/.
//
// Every family has the same files (<f> = estep, boxes, lattice, crf):
//   <f>.h         per-element math, host + device    <f>_checks.h   input checks, both bindings
//   <f>_cpu.cpp   CPU kernels + CPU registration      <f>_cuda.cu    torch-free CUDA kernels
//   <f>_cuda.h    their launchers                     <f>_cuda.cpp   CUDA binding + registration
// plus lattice_cpu.h (CpuLattice), lattice_cuda_torch.h (CudaLattice, built with torch tensors) and
// crf_features.h, shared by the lattice and CRF bindings.
//
//   op                    family    CPU kernel         CUDA kernels      CUDA binding
//   em_fixed              estep     estep_cpu.cpp      estep_cuda.cu     estep_cuda.cpp
//   em_adapt              estep     estep_cpu.cpp      estep_cuda.cu     estep_cuda.cpp
//   boxes_to_labels       boxes     boxes_cpu.cpp      boxes_cuda.cu     boxes_cuda.cpp
//   bbox_em_fixed         boxes     boxes_cpu.cpp      boxes_cuda.cu     boxes_cuda.cpp
//   permutohedral_filter  lattice   lattice_cpu.cpp    lattice_cuda.cu   lattice_cuda.cpp
//    (and _backward)
//   dense_crf             crf       crf_cpu.cpp        crf_cuda.cu +     crf_cuda.cpp
//    (and _backward)                                   lattice_cuda.cu
#include <Python.h>
#include <torch/library.h>

#include "common/library.h"

extern "C" {
// Importing emseg._C only has to run the static registrations below; the module has no functions.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

EMSEG_TORCH_LIBRARY(EMSEG_LIBRARY, m) {
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
  // The gradient of permutohedral_filter with respect to values (the filter's transpose).
  m.def("permutohedral_filter_backward(Tensor grad, Tensor features, bool normalize=True) -> Tensor");
  m.def("dense_crf(Tensor unary, Tensor image, Tensor compat, float[] pos_std, float[] bi_std, "
        "int iterations=10, Tensor? sizes=None, bool logits=False) -> Tensor");
  // The gradient of dense_crf with respect to unary, given the gradient of its output.
  m.def("dense_crf_backward(Tensor grad, Tensor unary, Tensor image, Tensor compat, float[] pos_std, "
        "float[] bi_std, int iterations=10, Tensor? sizes=None, bool logits=False) -> Tensor");
}
