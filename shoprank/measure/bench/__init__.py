"""`make bench`: our served ranker side by side with what a user would otherwise run."""
