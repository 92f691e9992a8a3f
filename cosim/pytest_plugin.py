"""pytest plugin of kvmppc-cosim (fixtures cosim_run, cosim_gdb; markers). Filled in below."""
