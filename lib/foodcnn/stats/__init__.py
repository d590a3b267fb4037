"""Statistics: pairing two runs image by image, the tests and their power, the reports' claims and the headline findings."""
