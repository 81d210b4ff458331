# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_supermin_global_optspecs
    string join \n prepare build o= f/format= copy-kernel host-cpu= if-newer force lock= include-packagelist packager-config= use-installed size= v/verbose q/quiet V/version list-drivers deps= modules= sysroot= packager= names dtb= help
end

function __fish_supermin_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_supermin_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_supermin_using_subcommand
    set -l cmd (__fish_supermin_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c supermin -n "__fish_supermin_needs_command" -s o -d 'Set the output directory.' -r
complete -c supermin -n "__fish_supermin_needs_command" -s f -l format -d 'Set the output format: chroot (or fs, filesystem), ext2, initramfs, tar or erofs (a kernel view\'s metadata image).' -r
complete -c supermin -n "__fish_supermin_needs_command" -l host-cpu -d 'Set the host CPU architecture (the default is this machine\'s).' -r
complete -c supermin -n "__fish_supermin_needs_command" -l lock -d 'Hold a lock on LOCKFILE while building.' -r
complete -c supermin -n "__fish_supermin_needs_command" -l packager-config -d 'Set an alternate package manager configuration file.' -r
complete -c supermin -n "__fish_supermin_needs_command" -l size -d 'Set the size of the ext2 filesystem (e.g. 4G).' -r
complete -c supermin -n "__fish_supermin_needs_command" -l deps -d 'Take every installed dependency (all, the default), or exactly the original supermin\'s closure (supermin: it loses later alternatives, virtual packages and arch-qualified names).' -r -f -a "all\t''
supermin\t''"
complete -c supermin -n "__fish_supermin_needs_command" -l modules -d 'Which kernel modules -f ext2 and -f initramfs carry: vm, those an appliance in a virtual machine can need (filesystems, block, md and device-mapper, crypto, virtio, emulated disks, network core; the default for initramfs, which must fit in the VM\'s memory), or all, the whole modules directory (the default for ext2, as the original supermin).' -r -f -a "vm\t''
all\t''"
complete -c supermin -n "__fish_supermin_needs_command" -l sysroot -d 'Read the package database, packages and host files under DIR instead of /.' -r -F
complete -c supermin -n "__fish_supermin_needs_command" -l packager -d 'Use this package manager (dpkg, rpm or pacman) instead of detecting it.' -r
complete -c supermin -n "__fish_supermin_needs_command" -l dtb -d 'Give an error (this option was removed in supermin 5.1.18).' -r
complete -c supermin -n "__fish_supermin_needs_command" -l prepare -d 'Prepare a supermin appliance.'
complete -c supermin -n "__fish_supermin_needs_command" -l build -d 'Build a full appliance.'
complete -c supermin -n "__fish_supermin_needs_command" -l copy-kernel -d 'Copy the kernel instead of symlinking to it.'
complete -c supermin -n "__fish_supermin_needs_command" -l if-newer -d 'Only build if the output is older than its inputs.'
complete -c supermin -n "__fish_supermin_needs_command" -l force -d 'Replace OUTPUTDIR even if it is not empty and not an earlier output (its contents are deleted).'
complete -c supermin -n "__fish_supermin_needs_command" -l include-packagelist -d 'Add a file with the list of packages (/packagelist).'
complete -c supermin -n "__fish_supermin_needs_command" -l use-installed -d 'Use installed files instead of accessing the network.'
complete -c supermin -n "__fish_supermin_needs_command" -s v -l verbose -d 'Print what is being done; repeat for more detail (-vv, -vvv).'
complete -c supermin -n "__fish_supermin_needs_command" -s q -l quiet -d 'Print nothing but errors: no warnings and no progress bars.'
complete -c supermin -n "__fish_supermin_needs_command" -s V -l version -d 'Display the version number and exit.'
complete -c supermin -n "__fish_supermin_needs_command" -l list-drivers -d 'Display the list of drivers and exit.'
complete -c supermin -n "__fish_supermin_needs_command" -l names -d 'Give an error (this flag was for supermin 4).'
complete -c supermin -n "__fish_supermin_needs_command" -l help -d 'Display this list of options.'
complete -c supermin -n "__fish_supermin_needs_command" -a "prepare" -d 'The same as supermin --prepare: write a supermin appliance (supermin.d).'
complete -c supermin -n "__fish_supermin_needs_command" -a "build" -d 'The same as supermin --build: build a full appliance from supermin.d inputs.'
complete -c supermin -n "__fish_supermin_needs_command" -a "mount" -d 'Serve the appliance described by SUPERMIN.D... read-only at MOUNTPOINT, resolving files on first use.'
complete -c supermin -n "__fish_supermin_needs_command" -a "umount" -d 'Unmount a view made by supermin mount, and wait for its daemon to exit.'
complete -c supermin -n "__fish_supermin_needs_command" -a "materialize" -d 'Build the appliance for real, as --build does, from SUPERMIN.D... or from a live mount of it.'
complete -c supermin -n "__fish_supermin_needs_command" -a "slim" -d 'Write a supermin appliance that leaves out every package file the traces (from supermin mount --trace) did not use.'
complete -c supermin -n "__fish_supermin_needs_command" -a "inspect" -d 'Show what the appliance holds and why: its packages, what pulled each in, and where the bytes go.'
complete -c supermin -n "__fish_supermin_needs_command" -a "run" -d 'Run a command (by default the appliance\'s shell) inside the appliance, served lazily in a private mount namespace; nothing stays mounted afterwards.'
complete -c supermin -n "__fish_supermin_needs_command" -a "serve" -d 'Serve the appliance as a virtio-fs device over vhost-user at SOCKET, for a qemu or libvirt started by someone else; it returns when that VM disconnects.'
complete -c supermin -n "__fish_supermin_needs_command" -a "completions" -d 'Print the shell completion script for SHELL (bash, zsh or fish) on standard output.'
complete -c supermin -n "__fish_supermin_needs_command" -a "manpage" -d 'Write the manual pages (supermin.1 and one page per subcommand) into DIR.'
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -s o -d 'Set the output directory.' -r
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -s f -l format -d 'Set the output format: chroot (or fs, filesystem), ext2, initramfs, tar or erofs (a kernel view\'s metadata image).' -r
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l host-cpu -d 'Set the host CPU architecture (the default is this machine\'s).' -r
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l lock -d 'Hold a lock on LOCKFILE while building.' -r
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l packager-config -d 'Set an alternate package manager configuration file.' -r
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l size -d 'Set the size of the ext2 filesystem (e.g. 4G).' -r
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l deps -d 'Take every installed dependency (all, the default), or exactly the original supermin\'s closure (supermin: it loses later alternatives, virtual packages and arch-qualified names).' -r -f -a "all\t''
supermin\t''"
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l modules -d 'Which kernel modules -f ext2 and -f initramfs carry: vm, those an appliance in a virtual machine can need (filesystems, block, md and device-mapper, crypto, virtio, emulated disks, network core; the default for initramfs, which must fit in the VM\'s memory), or all, the whole modules directory (the default for ext2, as the original supermin).' -r -f -a "vm\t''
all\t''"
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l sysroot -d 'Read the package database, packages and host files under DIR instead of /.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l packager -d 'Use this package manager (dpkg, rpm or pacman) instead of detecting it.' -r
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l dtb -d 'Give an error (this option was removed in supermin 5.1.18).' -r
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -s h -l help -d 'Print this help, with an example.'
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l copy-kernel -d 'Copy the kernel instead of symlinking to it.'
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l if-newer -d 'Only build if the output is older than its inputs.'
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l force -d 'Replace OUTPUTDIR even if it is not empty and not an earlier output (its contents are deleted).'
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l include-packagelist -d 'Add a file with the list of packages (/packagelist).'
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l use-installed -d 'Use installed files instead of accessing the network.'
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -s v -l verbose -d 'Print what is being done; repeat for more detail (-vv, -vvv).'
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -s q -l quiet -d 'Print nothing but errors: no warnings and no progress bars.'
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -s V -l version -d 'Display the version number and exit.'
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l list-drivers -d 'Display the list of drivers and exit.'
complete -c supermin -n "__fish_supermin_using_subcommand prepare" -l names -d 'Give an error (this flag was for supermin 4).'
complete -c supermin -n "__fish_supermin_using_subcommand build" -s o -d 'Set the output directory.' -r
complete -c supermin -n "__fish_supermin_using_subcommand build" -s f -l format -d 'Set the output format: chroot (or fs, filesystem), ext2, initramfs, tar or erofs (a kernel view\'s metadata image).' -r
complete -c supermin -n "__fish_supermin_using_subcommand build" -l host-cpu -d 'Set the host CPU architecture (the default is this machine\'s).' -r
complete -c supermin -n "__fish_supermin_using_subcommand build" -l lock -d 'Hold a lock on LOCKFILE while building.' -r
complete -c supermin -n "__fish_supermin_using_subcommand build" -l packager-config -d 'Set an alternate package manager configuration file.' -r
complete -c supermin -n "__fish_supermin_using_subcommand build" -l size -d 'Set the size of the ext2 filesystem (e.g. 4G).' -r
complete -c supermin -n "__fish_supermin_using_subcommand build" -l deps -d 'Take every installed dependency (all, the default), or exactly the original supermin\'s closure (supermin: it loses later alternatives, virtual packages and arch-qualified names).' -r -f -a "all\t''
supermin\t''"
complete -c supermin -n "__fish_supermin_using_subcommand build" -l modules -d 'Which kernel modules -f ext2 and -f initramfs carry: vm, those an appliance in a virtual machine can need (filesystems, block, md and device-mapper, crypto, virtio, emulated disks, network core; the default for initramfs, which must fit in the VM\'s memory), or all, the whole modules directory (the default for ext2, as the original supermin).' -r -f -a "vm\t''
all\t''"
complete -c supermin -n "__fish_supermin_using_subcommand build" -l sysroot -d 'Read the package database, packages and host files under DIR instead of /.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand build" -l packager -d 'Use this package manager (dpkg, rpm or pacman) instead of detecting it.' -r
complete -c supermin -n "__fish_supermin_using_subcommand build" -l dtb -d 'Give an error (this option was removed in supermin 5.1.18).' -r
complete -c supermin -n "__fish_supermin_using_subcommand build" -s h -l help -d 'Print this help, with an example.'
complete -c supermin -n "__fish_supermin_using_subcommand build" -l copy-kernel -d 'Copy the kernel instead of symlinking to it.'
complete -c supermin -n "__fish_supermin_using_subcommand build" -l if-newer -d 'Only build if the output is older than its inputs.'
complete -c supermin -n "__fish_supermin_using_subcommand build" -l force -d 'Replace OUTPUTDIR even if it is not empty and not an earlier output (its contents are deleted).'
complete -c supermin -n "__fish_supermin_using_subcommand build" -l include-packagelist -d 'Add a file with the list of packages (/packagelist).'
complete -c supermin -n "__fish_supermin_using_subcommand build" -l use-installed -d 'Use installed files instead of accessing the network.'
complete -c supermin -n "__fish_supermin_using_subcommand build" -s v -l verbose -d 'Print what is being done; repeat for more detail (-vv, -vvv).'
complete -c supermin -n "__fish_supermin_using_subcommand build" -s q -l quiet -d 'Print nothing but errors: no warnings and no progress bars.'
complete -c supermin -n "__fish_supermin_using_subcommand build" -s V -l version -d 'Display the version number and exit.'
complete -c supermin -n "__fish_supermin_using_subcommand build" -l list-drivers -d 'Display the list of drivers and exit.'
complete -c supermin -n "__fish_supermin_using_subcommand build" -l names -d 'Give an error (this flag was for supermin 4).'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l trace -d 'Record every path used while mounted, and write the list to FILE when the mount ends (for supermin slim).' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l threads -d 'Serve requests with N threads (the default is one per core). Over FUSE io_uring, when the kernel offers it, there is one thread per CPU instead.' -r
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l deps -d 'Take every installed dependency (all, the default), or exactly the original supermin\'s closure (supermin: it loses later alternatives, virtual packages and arch-qualified names).' -r -f -a "all\t''
supermin\t''"
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l sysroot -d 'Read the package database, packages and host files under DIR instead of /.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l packager -d 'Use this package manager (dpkg, rpm or pacman) instead of detecting it.' -r
complete -c supermin -n "__fish_supermin_using_subcommand mount" -s h -l help -d 'Print this help, with an example.'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l daemon -d 'Detach once the mount is ready (by default a FUSE view is served in the foreground until unmounted; a kernel view has no process to serve it and returns once mounted either way).'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l allow-other -d 'Let other users in; file modes are then enforced by the kernel (default_permissions).'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l suid -d 'Honour set-uid bits, for use as a chroot (the default is nosuid).'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l dev -d 'Honour device nodes, for use as a chroot (the default is nodev).'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l passthrough -d 'Hand large host files to the kernel (FUSE passthrough, as root); every open then costs a round trip (by default this is chosen from the appliance\'s file sizes).'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l no-passthrough -d 'Read host files through the daemon, so that opens never reach it.'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l include-packagelist -d 'Add /packagelist, as --build --include-packagelist does.'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l kernel -d 'Mount the view in the kernel, or fail saying why (the default when run as root and the kernel can): an overlay whose lower layer is an EROFS image of the appliance\'s metadata and whose data layer is the host (or --sysroot), so reads go straight to the host files\' page cache and no process serves it. It returns once mounted (as with --daemon); every user may enter, as files\' modes allow (as with --allow-other).'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -l fuse -d 'Serve the view over FUSE from this process (the default when not root, with --trace, --passthrough or --threads, or when the kernel cannot have the kernel view).'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -s v -l verbose -d 'Print what is being done; repeat for more detail (-vv, -vvv).'
complete -c supermin -n "__fish_supermin_using_subcommand mount" -s q -l quiet -d 'Print nothing but errors: no warnings and no progress bars.'
complete -c supermin -n "__fish_supermin_using_subcommand umount" -s h -l help -d 'Print this help, with an example.'
complete -c supermin -n "__fish_supermin_using_subcommand umount" -s v -l verbose -d 'Print what is being done; repeat for more detail (-vv, -vvv).'
complete -c supermin -n "__fish_supermin_using_subcommand umount" -s q -l quiet -d 'Print nothing but errors: no warnings and no progress bars.'
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -s f -l format -d 'Set the output format: chroot, ext2, initramfs, tar or erofs.' -r
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -s o -d 'Set the output directory (or - for -f tar on standard output).' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -l size -d 'Set the size of the ext2 filesystem (e.g. 4G).' -r
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -l host-cpu -d 'Set the host CPU architecture (the default is this machine\'s).' -r
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -l deps -d 'Take every installed dependency (all, the default), or exactly the original supermin\'s closure (supermin: it loses later alternatives, virtual packages and arch-qualified names).' -r -f -a "all\t''
supermin\t''"
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -l modules -d 'Which kernel modules -f ext2 and -f initramfs carry: vm, those an appliance in a virtual machine can need (filesystems, block, md and device-mapper, crypto, virtio, emulated disks, network core; the default for initramfs, which must fit in the VM\'s memory), or all, the whole modules directory (the default for ext2, as the original supermin).' -r -f -a "vm\t''
all\t''"
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -l sysroot -d 'Read the package database, packages and host files under DIR instead of /.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -l packager -d 'Use this package manager (dpkg, rpm or pacman) instead of detecting it.' -r
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -s h -l help -d 'Print this help, with an example.'
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -l include-packagelist -d 'Add /packagelist (from a mount: only if it was mounted with it).'
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -l copy-kernel -d 'Copy the kernel instead of symlinking to it (ext2).'
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -l force -d 'Replace OUTPUT even if it is not empty and not an earlier output (its contents are deleted).'
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -s v -l verbose -d 'Print what is being done; repeat for more detail (-vv, -vvv).'
complete -c supermin -n "__fish_supermin_using_subcommand materialize" -s q -l quiet -d 'Print nothing but errors: no warnings and no progress bars.'
complete -c supermin -n "__fish_supermin_using_subcommand slim" -l trace -d 'Use a trace written by supermin mount --trace; repeat it for several workloads to keep their union.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand slim" -l keep -d 'Keep the package files this fnmatch pattern matches, used or not (e.g. \'/usr/lib/locale/*\').' -r
complete -c supermin -n "__fish_supermin_using_subcommand slim" -s o -d 'Write the slimmed supermin appliance to this directory.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand slim" -l deps -d 'Take every installed dependency (all, the default), or exactly the original supermin\'s closure (supermin: it loses later alternatives, virtual packages and arch-qualified names).' -r -f -a "all\t''
supermin\t''"
complete -c supermin -n "__fish_supermin_using_subcommand slim" -l sysroot -d 'Read the package database, packages and host files under DIR instead of /.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand slim" -l packager -d 'Use this package manager (dpkg, rpm or pacman) instead of detecting it.' -r
complete -c supermin -n "__fish_supermin_using_subcommand slim" -s h -l help -d 'Print this help, with an example.'
complete -c supermin -n "__fish_supermin_using_subcommand slim" -l force -d 'Replace NEW.D even if it is not empty and not an earlier output (its contents are deleted).'
complete -c supermin -n "__fish_supermin_using_subcommand slim" -s v -l verbose -d 'Print what is being done; repeat for more detail (-vv, -vvv).'
complete -c supermin -n "__fish_supermin_using_subcommand slim" -s q -l quiet -d 'Print nothing but errors: no warnings and no progress bars.'
complete -c supermin -n "__fish_supermin_using_subcommand inspect" -l svg -d 'Also draw where the bytes go, one bar per package, into FILE (an SVG picture).' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand inspect" -l top -d 'List the N largest files.' -r
complete -c supermin -n "__fish_supermin_using_subcommand inspect" -l deps -d 'Take every installed dependency (all, the default), or exactly the original supermin\'s closure (supermin: it loses later alternatives, virtual packages and arch-qualified names).' -r -f -a "all\t''
supermin\t''"
complete -c supermin -n "__fish_supermin_using_subcommand inspect" -l sysroot -d 'Read the package database, packages and host files under DIR instead of /.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand inspect" -l packager -d 'Use this package manager (dpkg, rpm or pacman) instead of detecting it.' -r
complete -c supermin -n "__fish_supermin_using_subcommand inspect" -s h -l help -d 'Print this help, with an example.'
complete -c supermin -n "__fish_supermin_using_subcommand inspect" -l json -d 'Print the report as JSON (the schema is in the README).'
complete -c supermin -n "__fish_supermin_using_subcommand inspect" -l include-packagelist -d 'Count /packagelist, as --build --include-packagelist would add it.'
complete -c supermin -n "__fish_supermin_using_subcommand inspect" -s v -l verbose -d 'Print what is being done; repeat for more detail (-vv, -vvv).'
complete -c supermin -n "__fish_supermin_using_subcommand inspect" -s q -l quiet -d 'Print nothing but errors: no warnings and no progress bars.'
complete -c supermin -n "__fish_supermin_using_subcommand run" -l bind -d 'Make the host directory or file HOST appear at GUEST inside the appliance (repeatable).' -r
complete -c supermin -n "__fish_supermin_using_subcommand run" -l accel -d 'The accelerator: KVM when it really works (auto, the default: a probe guest must run on it), else TCG emulation.' -r -f -a "auto\t''
kvm\t''
tcg\t''"
complete -c supermin -n "__fish_supermin_using_subcommand run" -l memory -d 'The guest\'s memory in MiB (default 1024).' -r
complete -c supermin -n "__fish_supermin_using_subcommand run" -l cpus -d 'The guest\'s CPUs (default 1).' -r
complete -c supermin -n "__fish_supermin_using_subcommand run" -l kernel -d 'The kernel to boot (its modules from /lib/modules/VERSION); the default is the one -f ext2 picks.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand run" -l trace -d 'Record every path the guest used, written to FILE when it ends (for supermin slim).' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand run" -l deps -d 'Take every installed dependency (all, the default), or exactly the original supermin\'s closure (supermin: it loses later alternatives, virtual packages and arch-qualified names).' -r -f -a "all\t''
supermin\t''"
complete -c supermin -n "__fish_supermin_using_subcommand run" -l sysroot -d 'Read the package database, packages and host files under DIR instead of /.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand run" -l packager -d 'Use this package manager (dpkg, rpm or pacman) instead of detecting it.' -r
complete -c supermin -n "__fish_supermin_using_subcommand run" -s h -l help -d 'Print this help, with an example.'
complete -c supermin -n "__fish_supermin_using_subcommand run" -l writable -d 'Put a writable layer (in memory) over the appliance, so that the command can change files; the changes are dropped at the end.'
complete -c supermin -n "__fish_supermin_using_subcommand run" -l vm -d 'Boot the appliance in a VM (qemu) whose root is the view, served over virtio-fs by this process: nothing is built and root is not needed. The command\'s output and exit status are its own.'
complete -c supermin -n "__fish_supermin_using_subcommand run" -s v -l verbose -d 'Print what is being done; repeat for more detail (-vv, -vvv).'
complete -c supermin -n "__fish_supermin_using_subcommand run" -s q -l quiet -d 'Print nothing but errors: no warnings and no progress bars.'
complete -c supermin -n "__fish_supermin_using_subcommand serve" -l vhost-user -d 'The Unix socket to listen on (it must not exist); the VM\'s vhost-user-fs device connects to it.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand serve" -l trace -d 'Record every path the VM used, written to FILE when it disconnects (for supermin slim).' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand serve" -l deps -d 'Take every installed dependency (all, the default), or exactly the original supermin\'s closure (supermin: it loses later alternatives, virtual packages and arch-qualified names).' -r -f -a "all\t''
supermin\t''"
complete -c supermin -n "__fish_supermin_using_subcommand serve" -l sysroot -d 'Read the package database, packages and host files under DIR instead of /.' -r -F
complete -c supermin -n "__fish_supermin_using_subcommand serve" -l packager -d 'Use this package manager (dpkg, rpm or pacman) instead of detecting it.' -r
complete -c supermin -n "__fish_supermin_using_subcommand serve" -s h -l help -d 'Print this help, with an example.'
complete -c supermin -n "__fish_supermin_using_subcommand serve" -s v -l verbose -d 'Print what is being done; repeat for more detail (-vv, -vvv).'
complete -c supermin -n "__fish_supermin_using_subcommand serve" -s q -l quiet -d 'Print nothing but errors: no warnings and no progress bars.'
complete -c supermin -n "__fish_supermin_using_subcommand completions" -s h -l help -d 'Print this help, with an example.'
complete -c supermin -n "__fish_supermin_using_subcommand manpage" -s h -l help -d 'Print this help, with an example.'
