"""Live Training Dashboard: the run store, the page's model of runs, charts and the training doctor.

The public entry points stay at the top level, as the design card has them: `training_monitor`
(TrainingMonitor, to watch your own loop), `neural_network` (MonitoredMLP, MonitoredCNN) and
`dashboard.py` (the Streamlit page; `live-training-dashboard` starts it). This package holds the
rest under one name, so installing it shadows no popular package (`datasets`, `charts`, ...).
Importing it imports nothing heavy: the page never loads torch.
"""
