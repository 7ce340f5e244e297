"""Handwritten text recognition: ground truth, compiled datasets, CRNN training and inference.

Ground-truth side (numpy, Pillow, lxml; no torch):

    jobs.htr.gt         read PAGE XML, ALTO and image + .gt.txt pairs into `LineSample`s
    jobs.htr.files      finding ground-truth files and the images they refer to
    jobs.htr.formats    the XML parsers behind it (no images)
    jobs.htr.lineimage  line extraction by polygon, height normalisation
    jobs.htr.dataset    `compile_dataset` and the memory-mapped `CompiledDataset`
    jobs.htr.writeback  write recognised text back into PAGE / ALTO
    jobs.htr.synth      synthetic ground truth rendered from system fonts
    jobs.htr.errors     `GroundTruthError`

`python -m jobs.htr --help` lists the command line.
"""
