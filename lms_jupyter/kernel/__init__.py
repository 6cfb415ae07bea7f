"""The kernel side of lms-jupyter: ``%lms`` / ``%%chat`` magics, widgets and the
``lms-jupyter`` terminal commands, all driven by one in-process ModelManager.

Nothing here imports tornado or jupyter_server, and llama_cpp is imported only when a
model is loaded, so ``%load_ext lms_jupyter`` stays cheap.
"""
