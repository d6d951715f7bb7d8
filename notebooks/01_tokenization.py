# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Tokenization
# **What does the model actually see when you type a prompt?**

# %%
import llm_tutorial as lt

banner = lt.setup_notebook(seed=0)

# %%
tokenizer = lt.load_tokenizer()
view = lt.show_tokens(tokenizer, "Hello world! こんにちは")
print(view)
view

# %%
import matplotlib.pyplot as plt

plt.bar(["a", "b"], [1, 2])
plt.show()

# %% tags=["solution"] jupyter={"source_hidden": true}
assert len(view) > 3
