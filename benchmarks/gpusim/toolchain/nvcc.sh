#!/bin/sh
# Stands in for nvcc in the simulator's CUDA 11.8 folder: its setup script and makefiles only
# read the version (the kernels are compiled by CUDA 13's nvcc).
echo "nvcc: NVIDIA (R) Cuda compiler driver"
echo "Cuda compilation tools, release 11.8, V11.8.89"
