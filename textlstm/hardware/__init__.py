"""Running on this machine: the device, the precision, CPU threads, memory pages."""
