"""Binary card-fraud classifier: synthetic data, shared features, training and serving."""
