"""What the peer servers of the serving benchmark run, each in its own environment: never
imported by modelhub's."""
