"""The Streamlit prediction form (`churn-monitor ui`).

* :mod:`.form`: the 19 inputs, their defaults from the reference snapshot and the rules
  that keep dependent fields consistent (pure, no Streamlit);
* :mod:`.apiclient`: the prediction API as the page sees it (``POST /predict``,
  ``GET /model``), every failure as one readable :class:`~.apiclient.ApiError`;
* :mod:`.explain`: confidence in words, which features push this customer's
  probability (counterfactuals at the reference values) and the sentences about them;
* :mod:`.importance`: the champion's global permutation importances from MLflow;
* :mod:`.app`: the Streamlit script; :mod:`.launch`: ``run_ui(config, host, port)``.
"""
