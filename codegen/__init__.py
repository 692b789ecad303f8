"""pccompile.codegen: backends that execute a lowered Program (torch reference; triton kernels)."""
