"""Media: MP4 writing (PyAV, H.264 + AAC), reading back, thumbnails, image decoding. No torch here."""
