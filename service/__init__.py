"""torchdoctor's engine: probing, discovery, diagnosis, planning and installing. No UI imports."""
