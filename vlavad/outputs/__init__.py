"""What a scored video becomes for people: the result folder (tables and events), the annotated
video, and the HTML report."""
