"""Progress views in the kernel and terminal: model loads, downloads and `lms_jupyter.batch` runs."""
