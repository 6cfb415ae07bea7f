"""The notebook as context: variables, cells and errors in prompts.

* :mod:`.template`: which ``{...}`` are placeholders (pure text rules);
* :mod:`.render`: values as text for a model, capped in tokens (:mod:`.tokens`);
* :mod:`.history`: cells, outputs and recorded errors; :mod:`.interpolate` fills a prompt;
* :mod:`.assist`: the ``%lms fix`` / ``%lms explain`` requests;
* :mod:`.ipython`, :mod:`.kernel_assist`, :mod:`.options`: the thin IPython adapter;
* :mod:`.public`: ``lms_jupyter.chat(...)``.

Only the adapter modules import IPython.
"""
