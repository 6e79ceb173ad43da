"""Getting a registered version into use: exporting it for serving, predicting with it, its model card."""
