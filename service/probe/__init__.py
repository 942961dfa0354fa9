"""The probe: which NVIDIA GPUs and driver this machine has (NVML, then nvidia-smi, then driver files)."""
