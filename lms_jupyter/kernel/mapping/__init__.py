"""`lms_jupyter.batch`: one prompt or schema mapped over a list, Series or DataFrame, with a resume cache."""
