# Thin wrappers over npm scripts; npm is the source of truth.
.PHONY: build test bench demo clean

build:
	npm run build

test:
	npm test

bench:
	npm run bench

demo:
	npm run demo

clean:
	rm -rf dist .tap bench/results
