"""unetzoo's napari plugin (npe2; `pip install 'unetzoo[napari]'`, docs/napari.md): a dock
widget that predicts the selected image layer into a labels layer, fine-tunes the model on
the corrected labels for a time budget and exports it (`widget.UnetzooWidget`), and a
reader of run folders and label images (`reader.get_reader`). The loop itself, without
Qt, is `loop`. Importing this package imports neither napari nor Qt.
"""
