"""score.py's side: new recordings scored (raw ones streamed in bounded memory), anomalies localised in frequency,
the timeline plot and SigMF annotations. Built on src.ood, which never imports it."""
