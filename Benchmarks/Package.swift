// swift-tools-version:6.1
// The llmspool benchmarks: a package of their own, so the main package builds and tests without them.
// Build: swift build -c release --package-path Benchmarks --scratch-path .build-bench
// Run everything and print the table: bench/run.sh
import PackageDescription

let package = Package(
    name: "llmspool-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        // `name:` so the product can be named whatever the clone's folder is called.
        .package(name: "llmspool", path: "..")
    ],
    targets: [
        .executableTarget(
            name: "spool-bench",
            dependencies: [.product(name: "Spool", package: "llmspool")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // JSONParser on whole documents (bench/json/run.sh makes them and runs this beside Python's json).
        .executableTarget(
            name: "json-bench",
            dependencies: [.product(name: "JSON", package: "llmspool")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
