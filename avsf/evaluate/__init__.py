"""Evaluation of trained models: multi-view prediction (views) and the metrics of each
dataset's official protocol (classification: Kinetics)."""
